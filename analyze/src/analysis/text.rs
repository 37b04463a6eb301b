//! The report as human-readable text: a headline, then one section per analysis with
//! aligned tables and chains.

use std::fmt::Write as _;

use super::diff::{Basis, Diff};
use super::report::Report;
use super::spof::Impact;

impl Report {
    /// Human-readable text: tables and chains, `top` rows of the long rankings.
    pub fn to_text(&self, top: usize) -> String {
        let report = self;
        let mut out = String::new();
        let summary = &report.summary;
        let _ = writeln!(
            out,
            "smap analyze: {} services, {} dependencies, window {} .. {}",
            summary.services, summary.dependencies, report.window.start, report.window.end
        );
        let _ = writeln!(out, "{}", gate_line(report));

        if let Some(policy) = &report.policy {
            section(&mut out, "Policy violations", policy.violations.len());
            for violation in &policy.violations {
                let _ = writeln!(out, "  [{}] {}", violation.rule, violation.message);
            }
        }

        if let Some(netpol) = &report.network_policies {
            section(&mut out, "Observed traffic NetworkPolicies would deny", netpol.denied.len());
            for d in &netpol.denied {
                let _ = writeln!(out, "  {}", d.line());
            }
            if !netpol.unused_rules.is_empty() {
                let _ = writeln!(out, "  NetworkPolicy rules no observed traffic used: {}", netpol.unused_rules.len());
            }
        }

        section(&mut out, "Entry points", report.entry_points.len());
        let rows = report
            .entry_points
            .iter()
            .map(|entry| {
                vec![entry.id.clone(), entry.reasons.iter().map(|r| r.describe()).collect::<Vec<_>>().join(", ")]
            })
            .collect();
        out.push_str(&table(&["SERVICE", "WHY"], rows));

        section(&mut out, "Dependency chains, longest from each entry point", report.chains.longest.len());
        let rows = report
            .chains
            .longest
            .iter()
            .map(|chain| vec![chain.depth.to_string(), chain.services.join(" -> ")])
            .collect();
        out.push_str(&table(&["DEPTH", "CHAIN"], rows));
        if let Some(critical) = report.chains.critical() {
            let _ = writeln!(out, "  critical path: {}", critical.services.join(" -> "));
        }

        section(&mut out, "Circular dependencies", report.cycles.components.len());
        for component in &report.cycles.components {
            let _ = writeln!(out, "  {}", component.services.join(", "));
            for cycle in &component.cycles {
                let _ = writeln!(out, "    {} -> {}", cycle.join(" -> "), cycle.first().map_or("", String::as_str));
            }
            if component.truncated {
                let _ = writeln!(out, "    ... more cycles not listed");
            }
        }
        if !report.cycles.self_calls.is_empty() {
            let _ = writeln!(out, "  calls to themselves (not counted): {}", report.cycles.self_calls.join(", "));
        }

        section(&mut out, "Orphaned services", report.orphans.len());
        let rows =
            report.orphans.iter().map(|orphan| vec![orphan.id.clone(), orphan.reason.describe().to_owned()]).collect();
        out.push_str(&table(&["SERVICE", "WHY"], rows));

        let spof = &report.single_points_of_failure;
        let _ = writeln!(
            out,
            "\nSingle points of failure: {} (at most one ready endpoint, {} or more services affected)",
            summary.single_points_of_failure, spof.min_affected
        );
        if !spof.ranked.is_empty() {
            let _ = writeln!(out, "  Failure impact, top {} of {}:", top.min(spof.ranked.len()), spof.ranked.len());
            let rows = spof.ranked.iter().take(top).map(impact_row).collect();
            out.push_str(&table(
                &[
                    "RANK",
                    "SERVICE",
                    "TYPE",
                    "HEALTH",
                    "READY",
                    "DEPENDENTS",
                    "TRANSITIVE",
                    "CUT OFF",
                    "AFFECTED",
                    "ARTICULATION",
                    "SPOF",
                ],
                rows,
            ));
        }

        let dependencies = &report.dependencies;
        section(&mut out, "Cross-namespace dependencies", dependencies.cross_namespace.len());
        out.push_str(&dependency_table(&dependencies.cross_namespace));
        section(&mut out, "External dependencies (outbound)", dependencies.external.outbound.len());
        out.push_str(&dependency_table(&dependencies.external.outbound));
        section(&mut out, "External callers (inbound)", dependencies.external.inbound.len());
        out.push_str(&dependency_table(&dependencies.external.inbound));

        let mut fan: Vec<_> = dependencies.fan.iter().filter(|fan| fan.fan_in + fan.fan_out > 0).collect();
        fan.sort_by(|a, b| {
            b.fan_in.cmp(&a.fan_in).then_with(|| b.fan_out.cmp(&a.fan_out)).then_with(|| a.id.cmp(&b.id))
        });
        if fan.is_empty() {
            out.push_str("\nFan-in / fan-out: none\n");
        } else {
            let _ = writeln!(out, "\nFan-in / fan-out, top {} of {} by fan-in:", top.min(fan.len()), fan.len());
        }
        let rows = fan
            .iter()
            .take(top)
            .map(|fan| vec![fan.id.clone(), fan.fan_in.to_string(), fan.fan_out.to_string()])
            .collect();
        out.push_str(&table(&["SERVICE", "FAN-IN", "FAN-OUT"], rows));

        section(&mut out, "Failing edges", dependencies.failing_edges.len());
        let rows = dependencies
            .failing_edges
            .iter()
            .map(|edge| {
                vec![
                    edge.source.clone(),
                    edge.destination.clone(),
                    format!("{}/{}", edge.protocol, edge.port),
                    edge.connections.to_string(),
                    edge.failed.to_string(),
                    percent(edge.failure_ratio),
                ]
            })
            .collect();
        out.push_str(&table(&["SOURCE", "DESTINATION", "PORT", "CONNECTIONS", "FAILED", "FAILURE RATIO"], rows));

        if let Some(diff) = &report.diff {
            render_diff(&mut out, diff, summary.changes.unwrap_or(0));
        }
        out
    }
}

fn render_diff(out: &mut String, diff: &Diff, changes: usize) {
    let _ = writeln!(
        out,
        "\nChanges since the baseline ({} .. {}): {changes}",
        diff.baseline_window.start, diff.baseline_window.end
    );
    for service in &diff.services_added {
        let _ = writeln!(out, "  + service {} ({})", service.id, service.service_type.as_str());
    }
    for service in &diff.services_removed {
        let _ = writeln!(out, "  - service {} ({})", service.id, service.service_type.as_str());
    }
    for dependency in &diff.dependencies_added {
        let _ = writeln!(
            out,
            "  + dependency {} -> {} ({})",
            dependency.source,
            dependency.destination,
            dependency.ports.join(", ")
        );
    }
    for dependency in &diff.dependencies_removed {
        let _ = writeln!(
            out,
            "  - dependency {} -> {} ({})",
            dependency.source,
            dependency.destination,
            dependency.ports.join(", ")
        );
    }
    for change in &diff.changes {
        let _ = writeln!(
            out,
            "  ~ {} {}: {} -> {}",
            change.id,
            change.field.name(),
            change.before.as_deref().unwrap_or("none"),
            change.after.as_deref().unwrap_or("none")
        );
    }
    let unit = match diff.basis {
        Basis::PerMinute => "attempts/min",
        Basis::Count => "attempts",
    };
    for shift in &diff.traffic_shifts {
        let _ = writeln!(
            out,
            "  ~ traffic {} -> {}: {} -> {} {unit} ({:+}%)",
            shift.source, shift.destination, shift.before, shift.after, shift.change_percent
        );
    }
}

/// The gate's verdict in one line.
pub fn gate_line(report: &Report) -> String {
    if report.gate.passed {
        return "result: passed".to_owned();
    }
    let reasons: Vec<String> = report
        .gate
        .failed
        .iter()
        .map(|check| format!("{} ({})", check.as_str(), report.summary.count(*check).unwrap_or(0)))
        .collect();
    format!("result: FAILED on {}", reasons.join(", "))
}

fn section(out: &mut String, title: &str, count: usize) {
    let _ = writeln!(out, "\n{title}: {}", if count == 0 { "none".to_owned() } else { count.to_string() });
}

fn impact_row(impact: &Impact) -> Vec<String> {
    vec![
        impact.rank.to_string(),
        impact.id.clone(),
        impact.service_type.as_str().to_owned(),
        impact.health.as_str().to_owned(),
        format!("{}/{}", impact.endpoints.ready, impact.endpoints.total),
        impact.dependents.to_string(),
        impact.transitive_dependents.to_string(),
        impact.cut_off.to_string(),
        impact.affected.to_string(),
        yes_no(impact.articulation_point).to_owned(),
        yes_no(impact.spof).to_owned(),
    ]
}

fn dependency_table(dependencies: &[super::dependencies::Dependency]) -> String {
    let rows = dependencies
        .iter()
        .map(|d| {
            vec![
                with_dns_name(&d.source, d.dns_name.as_deref().filter(|_| d.source.starts_with("external/"))),
                with_dns_name(&d.destination, d.dns_name.as_deref().filter(|_| d.destination.starts_with("external/"))),
                d.ports.join(","),
                d.connections.to_string(),
                d.failed.to_string(),
            ]
        })
        .collect();
    table(&["SOURCE", "DESTINATION", "PORTS", "CONNECTIONS", "FAILED"], rows)
}

/// `external/192.0.2.10:443 (api.stripe.com)`.
pub fn with_dns_name(id: &str, dns_name: Option<&str>) -> String {
    match dns_name {
        Some(name) => format!("{id} ({name})"),
        None => id.to_owned(),
    }
}
/// Left-aligned columns two spaces apart, indented by two; nothing for no rows.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (width, cell) in widths.iter().zip(row) {
            let _ = write!(line, "  {cell:<width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// A ratio as a percentage with one decimal.
pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_trims() {
        let text = table(&["A", "LONGER"], vec![vec!["wide cell".into(), "x".into()], vec!["y".into(), String::new()]]);
        assert_eq!(text, "  A          LONGER\n  wide cell  x\n  y\n");
    }
}
