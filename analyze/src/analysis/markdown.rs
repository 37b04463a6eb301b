//! The report as Markdown for a pull request comment: the verdict and a summary table
//! first, then only the sections that found something.

use std::fmt::Write as _;

use super::diff::Basis;
use super::report::Report;
use super::text::percent;
use super::Check;

impl Report {
    /// Markdown for a pull request comment, `top` rows of the long rankings.
    pub fn to_markdown(&self, top: usize) -> String {
        let report = self;
        let mut out = String::new();
        let summary = &report.summary;
        let verdict = if report.gate.passed { "✅ passed" } else { "❌ failed" };
        let _ = writeln!(out, "## smap analyze: {verdict}\n");
        let _ = writeln!(
            out,
            "{} services, {} dependencies, window `{}` .. `{}`.\n",
            summary.services, summary.dependencies, report.window.start, report.window.end
        );

        let mut rows = Vec::new();
        let mut row = |label: &str, check: Option<Check>, count: Option<usize>| {
            let Some(count) = count else { return };
            let failed = check.is_some_and(|check| report.gate.failed.contains(&check));
            rows.push(vec![label.to_owned(), format!("{count}{}", if failed { " ❌" } else { "" })]);
        };
        row("Policy violations", Some(Check::Violations), summary.violations);
        row("NetworkPolicy denials", Some(Check::NetworkPolicies), summary.network_policy_denials);
        row("Circular dependencies", Some(Check::Cycles), Some(summary.cycles));
        row("Single points of failure", Some(Check::Spof), Some(summary.single_points_of_failure));
        row("Orphaned services", Some(Check::Orphans), Some(summary.orphans));
        row("Cross-namespace dependencies", Some(Check::CrossNamespace), Some(summary.cross_namespace));
        row("External dependencies", Some(Check::External), Some(summary.external_dependencies));
        row("Failing edges", Some(Check::Failures), Some(summary.failing_edges));
        row("Changes since the baseline", Some(Check::Changes), summary.changes);
        row("New dependencies", Some(Check::NewDependencies), summary.new_dependencies);
        row("Entry points", None, Some(summary.entry_points));
        row("Longest chain (calls)", None, Some(summary.max_chain_depth));
        out.push_str(&table(&["Finding", "Count"], rows));

        if let Some(policy) = report.policy.as_ref().filter(|policy| !policy.violations.is_empty()) {
            heading(&mut out, "Policy violations");
            let rows = policy.violations.iter().map(|v| vec![code(&v.rule), cell(&v.message)]).collect();
            out.push_str(&table(&["Rule", "Violation"], rows));
        }

        if let Some(netpol) = report.network_policies.as_ref().filter(|n| !n.denied.is_empty()) {
            heading(&mut out, "Observed traffic NetworkPolicies would deny");
            let rows = netpol
                .denied
                .iter()
                .map(|d| {
                    vec![
                        d.direction.as_str().to_owned(),
                        code(&d.source),
                        code(&d.destination),
                        format!("{}/{}", d.protocol.to_lowercase(), d.port),
                        d.connections.to_string(),
                        d.policies.iter().map(|p| code(p)).collect::<Vec<_>>().join(", "),
                    ]
                })
                .collect();
            out.push_str(&table(&["Direction", "Source", "Destination", "Port", "Connections", "Isolated by"], rows));
        }

        if let Some(diff) = report.diff.as_ref().filter(|diff| !diff.is_empty()) {
            heading(&mut out, "Changes since the baseline");
            for service in &diff.services_added {
                let _ = writeln!(out, "- ➕ service {} ({})", code(&service.id), service.service_type.as_str());
            }
            for service in &diff.services_removed {
                let _ = writeln!(out, "- ➖ service {} ({})", code(&service.id), service.service_type.as_str());
            }
            for d in &diff.dependencies_added {
                let _ = writeln!(
                    out,
                    "- ➕ dependency {} → {} ({})",
                    code(&d.source),
                    code(&d.destination),
                    d.ports.join(", ")
                );
            }
            for d in &diff.dependencies_removed {
                let _ = writeln!(
                    out,
                    "- ➖ dependency {} → {} ({})",
                    code(&d.source),
                    code(&d.destination),
                    d.ports.join(", ")
                );
            }
            for change in &diff.changes {
                let _ = writeln!(
                    out,
                    "- 🔁 {} {}: {} → {}",
                    code(&change.id),
                    change.field.name(),
                    code(change.before.as_deref().unwrap_or("none")),
                    code(change.after.as_deref().unwrap_or("none"))
                );
            }
            let unit = match diff.basis {
                Basis::PerMinute => "attempts/min",
                Basis::Count => "attempts",
            };
            for shift in &diff.traffic_shifts {
                let _ = writeln!(
                    out,
                    "- {} traffic {} → {}: {} → {} {unit} ({:+}%)",
                    if shift.change_percent < 0 { "📉" } else { "📈" },
                    code(&shift.source),
                    code(&shift.destination),
                    shift.before,
                    shift.after,
                    shift.change_percent
                );
            }
        }

        if !report.cycles.components.is_empty() {
            heading(&mut out, "Circular dependencies");
            for component in &report.cycles.components {
                let services: Vec<String> = component.services.iter().map(|s| code(s)).collect();
                let _ = writeln!(out, "- {}", services.join(", "));
                for cycle in &component.cycles {
                    let mut ids: Vec<String> = cycle.iter().map(|s| code(s)).collect();
                    ids.extend(cycle.first().map(|s| code(s)));
                    let _ = writeln!(out, "  - {}", ids.join(" → "));
                }
                if component.truncated {
                    out.push_str("  - … more cycles not listed\n");
                }
            }
        }

        let spof = &report.single_points_of_failure;
        if !spof.ranked.is_empty() {
            heading(&mut out, "Single points of failure");
            let _ = writeln!(
                out,
                "Failure impact, top {} of {}. **SPOF**: at most one ready endpoint and {} or more services affected.\n",
                top.min(spof.ranked.len()),
                spof.ranked.len(),
                spof.min_affected
            );
            let rows = spof
                .ranked
                .iter()
                .take(top)
                .map(|impact| {
                    vec![
                        impact.rank.to_string(),
                        code(&impact.id),
                        impact.service_type.as_str().to_owned(),
                        impact.health.as_str().to_owned(),
                        format!("{}/{}", impact.endpoints.ready, impact.endpoints.total),
                        impact.dependents.to_string(),
                        impact.transitive_dependents.to_string(),
                        impact.cut_off.to_string(),
                        impact.affected.to_string(),
                        if impact.spof { "**SPOF**".to_owned() } else { String::new() },
                    ]
                })
                .collect();
            out.push_str(&table(
                &["#", "Service", "Type", "Health", "Ready", "Dependents", "Transitive", "Cut off", "Affected", ""],
                rows,
            ));
        }

        if !report.chains.longest.is_empty() {
            heading(&mut out, "Dependency chains");
            out.push_str("Longest chain from each entry point; the first is the critical path.\n\n");
            let rows = report
                .chains
                .longest
                .iter()
                .map(|chain| {
                    let why = report.entry_points.iter().find(|entry| entry.id == chain.entry).map(|entry| {
                        entry.reasons.iter().map(|reason| reason.describe()).collect::<Vec<_>>().join(", ")
                    });
                    vec![
                        chain.depth.to_string(),
                        chain.services.iter().map(|s| code(s)).collect::<Vec<_>>().join(" → "),
                        why.unwrap_or_default(),
                    ]
                })
                .collect();
            out.push_str(&table(&["Depth", "Chain", "Entry point because"], rows));
        }

        if !report.orphans.is_empty() {
            heading(&mut out, "Orphaned services");
            let rows = report.orphans.iter().map(|o| vec![code(&o.id), cell(o.reason.describe())]).collect();
            out.push_str(&table(&["Service", "Why"], rows));
        }

        let dependencies = &report.dependencies;
        for (title, list) in [
            ("Cross-namespace dependencies", &dependencies.cross_namespace),
            ("External dependencies", &dependencies.external.outbound),
            ("External callers", &dependencies.external.inbound),
        ] {
            if list.is_empty() {
                continue;
            }
            heading(&mut out, title);
            let rows = list
                .iter()
                .map(|d| {
                    vec![
                        end(&d.source, d.dns_name.as_deref()),
                        end(&d.destination, d.dns_name.as_deref()),
                        d.ports.join(", "),
                        d.connections.to_string(),
                        d.failed.to_string(),
                    ]
                })
                .collect();
            out.push_str(&table(&["Source", "Destination", "Ports", "Connections", "Failed"], rows));
        }

        if !dependencies.failing_edges.is_empty() {
            heading(&mut out, "Failing edges");
            let rows = dependencies
                .failing_edges
                .iter()
                .map(|e| {
                    vec![
                        code(&e.source),
                        code(&e.destination),
                        format!("{}/{}", e.protocol, e.port),
                        e.connections.to_string(),
                        e.failed.to_string(),
                        percent(e.failure_ratio),
                    ]
                })
                .collect();
            out.push_str(&table(&["Source", "Destination", "Port", "Connections", "Failed", "Failure ratio"], rows));
        }

        let mut fan: Vec<_> = dependencies.fan.iter().filter(|fan| fan.fan_in + fan.fan_out > 0).collect();
        if !fan.is_empty() {
            fan.sort_by(|a, b| {
                b.fan_in.cmp(&a.fan_in).then_with(|| b.fan_out.cmp(&a.fan_out)).then_with(|| a.id.cmp(&b.id))
            });
            heading(&mut out, "Fan-in / fan-out");
            let _ =
                writeln!(out, "<details><summary>Top {} of {} by fan-in</summary>\n", top.min(fan.len()), fan.len());
            let rows =
                fan.iter().take(top).map(|f| vec![code(&f.id), f.fan_in.to_string(), f.fan_out.to_string()]).collect();
            out.push_str(&table(&["Service", "Fan-in", "Fan-out"], rows));
            out.push_str("\n</details>\n");
        }
        out
    }
}

fn heading(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n### {title}\n");
}

/// A code span; ids never contain backticks, but a stray one must not break the table.
fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'").replace('|', "\\|"))
}

/// One end of a dependency, with the DNS name of an external end.
fn end(id: &str, dns_name: Option<&str>) -> String {
    match dns_name.filter(|_| id.starts_with("external/")) {
        Some(name) => format!("{} ({})", code(id), cell(name)),
        None => code(id),
    }
}

/// A table cell: a `|` would end it.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut out =
        format!("| {} |\n|{}|\n", headers.join(" | "), headers.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}
