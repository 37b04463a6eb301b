//! `smap analyze`: a topology (read, or built from recordings) through the graph
//! analyses, an optional diff and policy, to a report and an exit code for CI.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use smap_analyze::analysis::{analyze, Check, DiffOptions, Options, Policy, Report};
use smap_analyze::html::{Page, Source};
use smap_analyze::render::{to_dot, to_mermaid};
use smap_analyze::Topology;

use crate::cli::{AnalyzeArgs, AnalyzeFormat, FailOn};
use crate::cmd::build::{build, load_config, open_input, page_title};
use crate::cmd::netpol::read_policies;
use crate::output::write_output;

/// Exit code when the gate fails: policy violations or findings given to `--fail-on`.
const EXIT_GATE_FAILED: u8 = 1;

pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let topology =
        load_topology(&args.inputs, &args.k8s_from, args.threads, args.config.as_deref()).context("reading input")?;
    let baseline = match &args.baseline {
        Some(path) => Some(
            load_topology(std::slice::from_ref(path), &[], args.threads, args.config.as_deref())
                .context("reading --baseline")?,
        ),
        None => None,
    };
    let policy = match &args.policy {
        Some(path) => Some(read_policy(path)?),
        None => None,
    };
    let options = Options {
        spof_min_affected: args.spof_min_affected,
        diff: DiffOptions {
            shift_threshold_percent: args.shift_threshold,
            shift_min_connections: args.shift_min_connections,
        },
        fail_on: args.fail_on.iter().map(|check| to_check(*check)).collect(),
    };
    let mut report = analyze(&topology, baseline.as_ref(), policy.as_ref(), &options)?;
    if !args.policies.is_empty() {
        report = report.with_network_policies(network_policies(&args)?);
    }
    let text = match args.format {
        AnalyzeFormat::Text => report.to_text(args.top),
        AnalyzeFormat::Json => report.to_json(),
        AnalyzeFormat::Markdown => report.to_markdown(args.top),
        AnalyzeFormat::Dot => to_dot(&topology, &report.highlights()),
        AnalyzeFormat::Mermaid => to_mermaid(&topology, &report.highlights()),
        AnalyzeFormat::Html => {
            let title = page_title("smap analyze", &args.inputs);
            Page { title: &title, source: Source::Topology(&topology), report: Some(&report) }.render()
        }
    };
    write_output(args.output.as_deref(), &text)?;
    if report.gate.passed {
        return Ok(ExitCode::SUCCESS);
    }
    #[expect(
        clippy::print_stderr,
        reason = "the verdict, for CI logs whatever the format and destination of the report"
    )]
    {
        eprintln!("smap analyze: failed on {}", failed_checks(&report));
    }
    Ok(ExitCode::from(EXIT_GATE_FAILED))
}

/// The NetworkPolicy findings: the recordings replayed once more, at pod level.
fn network_policies(args: &AnalyzeArgs) -> anyhow::Result<smap_analyze::netpol::CheckReport> {
    if !args.inputs.iter().all(|path| path.is_dir()) {
        bail!("--policies needs recording directories: NetworkPolicies are judged against the observed connections");
    }
    let mut policies = Vec::new();
    for path in &args.policies {
        policies.extend(read_policies(path).context("reading --policies")?);
    }
    crate::cmd::netpol::no_policies_is_an_error(&policies, &args.policies)?;
    let input = open_input(&args.inputs, &args.k8s_from, args.threads)?;
    smap_analyze::netpol::check(input, Some(policies)).context("checking NetworkPolicies")
}

/// One topology file, or recording directories built into one topology.
fn load_topology(
    paths: &[PathBuf],
    k8s_from: &[PathBuf],
    threads: Option<NonZeroUsize>,
    config: Option<&Path>,
) -> anyhow::Result<Topology> {
    let directories = paths.iter().filter(|path| path.is_dir()).count();
    match paths {
        [file] if directories == 0 => {
            if !k8s_from.is_empty() || config.is_some() {
                bail!("--k8s-from and --config apply to recording directories, but {} is a file", file.display());
            }
            let text = fs_err::read_to_string(file)?;
            Topology::from_json(&text).with_context(|| format!("reading topology {}", file.display()))
        }
        _ if directories == paths.len() => build(paths, k8s_from, threads, load_config(config)?),
        _ => bail!("give either one topology file or one or more recording directories"),
    }
}

fn read_policy(path: &Path) -> anyhow::Result<Policy> {
    let text = fs_err::read_to_string(path)?;
    Policy::from_yaml(&text).with_context(|| format!("reading policy {}", path.display()))
}

fn to_check(fail_on: FailOn) -> Check {
    match fail_on {
        FailOn::Violations => Check::Violations,
        FailOn::Cycles => Check::Cycles,
        FailOn::Spof => Check::Spof,
        FailOn::Orphans => Check::Orphans,
        FailOn::CrossNamespace => Check::CrossNamespace,
        FailOn::External => Check::External,
        FailOn::Failures => Check::Failures,
        FailOn::Changes => Check::Changes,
        FailOn::NewDependencies => Check::NewDependencies,
    }
}

/// `violations (2), cycles (1)`.
fn failed_checks(report: &Report) -> String {
    let checks: Vec<String> = report
        .gate
        .failed
        .iter()
        .map(|check| format!("{} ({})", check.as_str(), report.summary.count(*check).unwrap_or(0)))
        .collect();
    checks.join(", ")
}
