//! What changed between a baseline topology and this one: services and dependencies
//! added or removed, services whose kind, type, version or health changed, and
//! dependencies whose traffic moved beyond a threshold.
//!
//! Two windows rarely have the same length, so traffic is compared as attempts
//! (established plus failed) per minute of window when both windows have a length, and
//! as plain counts otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::topology::{NodeKind, Service, ServiceType, Topology, Window};

use super::dependencies::Dependency;
use super::graph::{dependency_pairs, Link};
use super::AnalysisError;

/// A service added or removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceRef {
    /// Service id.
    pub id: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// Detected type.
    #[serde(rename = "type")]
    pub service_type: ServiceType,
}

/// A property of a service that changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Service, workload, external or node.
    Kind,
    /// Detected type.
    Type,
    /// Version from labels or image tags.
    Version,
    /// Health from endpoint readiness.
    Health,
}

impl Field {
    /// How the field is named in a report.
    pub fn name(self) -> &'static str {
        match self {
            Field::Kind => "kind",
            Field::Type => "type",
            Field::Version => "version",
            Field::Health => "health",
        }
    }
}

/// One changed property of a service present in both topologies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Service id.
    pub id: String,
    /// What changed.
    pub field: Field,
    /// Value in the baseline (`null` for no version).
    pub before: Option<String>,
    /// Value now.
    pub after: Option<String>,
}

/// How traffic is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Attempts per minute of window.
    PerMinute,
    /// Attempts in the window (a window without a length).
    Count,
}

/// A dependency in both topologies whose traffic moved beyond the threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shift {
    /// Caller id.
    pub source: String,
    /// Callee id.
    pub destination: String,
    /// Traffic in the baseline, in the diff's basis (rounded to 2 decimals).
    pub before: f64,
    /// Traffic now.
    pub after: f64,
    /// Change in percent of `before`, rounded.
    pub change_percent: i64,
}

/// Thresholds of the diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiffOptions {
    /// Report a traffic change of at least this many percent.
    pub shift_threshold_percent: u32,
    /// Ignore traffic changes of dependencies with fewer attempts than this in both
    /// topologies (small numbers swing by hundreds of percent).
    pub shift_min_connections: u64,
}

/// What changed since the baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diff {
    /// The baseline's window.
    pub baseline_window: Window,
    /// Services only in this topology, by id.
    pub services_added: Vec<ServiceRef>,
    /// Services only in the baseline, by id.
    pub services_removed: Vec<ServiceRef>,
    /// Dependencies only in this topology, by (source, destination).
    pub dependencies_added: Vec<Dependency>,
    /// Dependencies only in the baseline (with the baseline's traffic).
    pub dependencies_removed: Vec<Dependency>,
    /// Changed properties of services in both, by (id, field).
    pub changes: Vec<Change>,
    /// How `traffic_shifts` compares traffic.
    pub basis: Basis,
    /// The threshold used, in percent.
    pub shift_threshold_percent: u32,
    /// Traffic changes beyond the threshold, by (source, destination).
    pub traffic_shifts: Vec<Shift>,
}

impl Diff {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.services_added.is_empty()
            && self.services_removed.is_empty()
            && self.dependencies_added.is_empty()
            && self.dependencies_removed.is_empty()
            && self.changes.is_empty()
            && self.traffic_shifts.is_empty()
    }
}

/// Compares a topology with its baseline.
pub fn diff(baseline: &Topology, current: &Topology, options: DiffOptions) -> Result<Diff, AnalysisError> {
    let before_pairs = dependency_pairs(baseline)?;
    let after_pairs = dependency_pairs(current)?;
    let service_ref = |id: &String, service: &Service| ServiceRef {
        id: id.clone(),
        kind: service.kind,
        service_type: service.service_type,
    };
    let services_added = current
        .services
        .iter()
        .filter(|(id, _)| !baseline.services.contains_key(*id))
        .map(|(id, service)| service_ref(id, service))
        .collect();
    let services_removed = baseline
        .services
        .iter()
        .filter(|(id, _)| !current.services.contains_key(*id))
        .map(|(id, service)| service_ref(id, service))
        .collect();
    let mut changes = Vec::new();
    for (id, after) in &current.services {
        let Some(before) = baseline.services.get(id) else { continue };
        let fields = [
            (Field::Kind, Some(kind_name(before.kind)), Some(kind_name(after.kind))),
            (Field::Type, Some(before.service_type.as_str()), Some(after.service_type.as_str())),
            (Field::Version, before.version.as_deref(), after.version.as_deref()),
            (Field::Health, Some(before.health.as_str()), Some(after.health.as_str())),
        ];
        for (field, old, new) in fields {
            if old != new {
                changes.push(Change {
                    id: id.clone(),
                    field,
                    before: old.map(str::to_owned),
                    after: new.map(str::to_owned),
                });
            }
        }
    }
    let only_in = |pairs: &BTreeMap<(&str, &str), Link>, other: &BTreeMap<(&str, &str), Link>| -> Vec<Dependency> {
        pairs
            .iter()
            .filter(|(pair, _)| !other.contains_key(*pair))
            .map(|((source, destination), link)| Dependency::new(source, destination, link))
            .collect()
    };
    let minutes = match (window_length(&baseline.window), window_length(&current.window)) {
        (Some(before), Some(after)) => Some((before.as_secs_f64() / 60.0, after.as_secs_f64() / 60.0)),
        _ => None,
    };
    let mut traffic_shifts = Vec::new();
    for ((source, destination), after) in &after_pairs {
        let Some(before) = before_pairs.get(&(*source, *destination)) else { continue };
        let (old, new) = (attempts(before), attempts(after));
        if old.max(new) < options.shift_min_connections || old == 0 {
            continue;
        }
        // Counts far beyond 2^52 would lose precision; rates are rounded for display anyway.
        let (old, new) = match minutes {
            Some((before_minutes, after_minutes)) => (old as f64 / before_minutes, new as f64 / after_minutes),
            None => (old as f64, new as f64),
        };
        let change = (new - old) / old * 100.0;
        if change.abs() >= f64::from(options.shift_threshold_percent) {
            let change_percent = change.round() as i64;
            traffic_shifts.push(Shift {
                source: (*source).to_owned(),
                destination: (*destination).to_owned(),
                before: round2(old),
                after: round2(new),
                change_percent,
            });
        }
    }
    Ok(Diff {
        baseline_window: baseline.window.clone(),
        services_added,
        services_removed,
        dependencies_added: only_in(&after_pairs, &before_pairs),
        dependencies_removed: only_in(&before_pairs, &after_pairs),
        changes,
        basis: if minutes.is_some() { Basis::PerMinute } else { Basis::Count },
        shift_threshold_percent: options.shift_threshold_percent,
        traffic_shifts,
    })
}

fn attempts(link: &Link) -> u64 {
    link.connections.saturating_add(link.failed)
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The length of a window, when both ends parse and it has one.
fn window_length(window: &Window) -> Option<Duration> {
    let start = humantime::parse_rfc3339_weak(&window.start).ok()?;
    let end = humantime::parse_rfc3339_weak(&window.end).ok()?;
    end.duration_since(start).ok().filter(|length| !length.is_zero())
}

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Service => "service",
        NodeKind::Workload => "workload",
        NodeKind::External => "external",
        NodeKind::Node => "node",
    }
}
