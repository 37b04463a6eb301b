//! What the map marks from `smap analyze`'s report: the nodes and edges of cycles,
//! single points of failure, policy violations, and a baseline diff's added, removed
//! and shifted dependencies. The report decides; the page only colours.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::Report;

/// Marks by node id and by dependency, with what the page shows beside them.
#[derive(Default, Serialize)]
pub struct Marks {
    nodes: BTreeMap<String, Vec<&'static str>>,
    #[serde(serialize_with = "as_list")]
    edges: BTreeMap<(String, String), EdgeMarks>,
    /// Services only in the baseline: drawn as ghosts.
    removed_services: Vec<String>,
    /// Dependencies only in the baseline, with the baseline's connections.
    removed_dependencies: Vec<Removed>,
}

#[derive(Serialize)]
struct EdgeMarks {
    source: String,
    destination: String,
    marks: Vec<&'static str>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct Removed {
    source: String,
    destination: String,
    connections: u64,
}

impl Marks {
    /// The marks of a report.
    pub fn of(report: &Report) -> Self {
        let mut marks = Marks::default();
        for component in &report.cycles.components {
            for id in &component.services {
                marks.node(id, "cycle");
            }
            for edge in &component.edges {
                marks.edge(&edge.source, &edge.destination, "cycle", None);
            }
        }
        for impact in report.single_points_of_failure.flagged() {
            marks.node(&impact.id, "spof");
        }
        for violation in report.policy.iter().flat_map(|policy| &policy.violations) {
            for edge in &violation.edges {
                marks.edge(&edge.source, &edge.destination, "violation", Some(violation.message.clone()));
            }
        }
        if let Some(diff) = &report.diff {
            for service in &diff.services_added {
                marks.node(&service.id, "added");
            }
            for change in &diff.changes {
                marks.node(&change.id, "changed");
            }
            for dependency in &diff.dependencies_added {
                marks.edge(&dependency.source, &dependency.destination, "added", None);
            }
            for shift in &diff.traffic_shifts {
                let note = format!("traffic {:+}% against the baseline", shift.change_percent);
                marks.edge(&shift.source, &shift.destination, "shift", Some(note));
            }
            marks.removed_services = diff.services_removed.iter().map(|s| s.id.clone()).collect();
            marks.removed_dependencies = diff
                .dependencies_removed
                .iter()
                .map(|d| Removed {
                    source: d.source.clone(),
                    destination: d.destination.clone(),
                    connections: d.connections,
                })
                .collect();
        }
        marks
    }

    fn node(&mut self, id: &str, mark: &'static str) {
        let marks = self.nodes.entry(id.to_owned()).or_default();
        if !marks.contains(&mark) {
            marks.push(mark);
        }
    }

    fn edge(&mut self, source: &str, destination: &str, mark: &'static str, note: Option<String>) {
        let entry = self.edges.entry((source.to_owned(), destination.to_owned())).or_insert_with(|| EdgeMarks {
            source: source.to_owned(),
            destination: destination.to_owned(),
            marks: Vec::new(),
            notes: Vec::new(),
        });
        if !entry.marks.contains(&mark) {
            entry.marks.push(mark);
        }
        entry.notes.extend(note);
    }
}

fn as_list<S: serde::Serializer>(edges: &BTreeMap<(String, String), EdgeMarks>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(edges.values())
}
