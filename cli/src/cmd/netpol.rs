//! `smap netpol check` and `smap netpol generate`: recordings replayed against
//! NetworkPolicies, to a report and an exit code for CI, or to policies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use smap_analyze::netpol::{self, parse_policies, GenerateOptions, Policy};

use crate::cli::{NetpolCheckArgs, NetpolFormat, NetpolGenerateArgs};
use crate::cmd::build::open_input;
use crate::output::write_output;

/// Exit code when observed traffic would be denied.
const EXIT_DENIED: u8 = 1;

pub fn check(args: NetpolCheckArgs) -> anyhow::Result<ExitCode> {
    let policies = if args.policies.is_empty() {
        None
    } else {
        let mut all = Vec::new();
        for path in &args.policies {
            all.extend(read_policies(path).context("reading --policies")?);
        }
        no_policies_is_an_error(&all, &args.policies)?;
        Some(all)
    };
    let input = open_input(&args.recordings, &args.k8s_from, args.threads)?;
    let report = netpol::check(input, policies).context("checking NetworkPolicies")?;
    let text = match args.format {
        NetpolFormat::Text => report.text(),
        NetpolFormat::Json => {
            let mut json = serde_json::to_string_pretty(&report).context("writing the report")?;
            json.push('\n');
            json
        }
        NetpolFormat::Markdown => report.markdown(),
    };
    write_output(args.output.as_deref(), &text)?;
    if report.denied.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    #[expect(clippy::print_stderr, reason = "the verdict, for CI logs whatever the format and destination")]
    {
        eprintln!("smap netpol check: {} observed dependencies would be denied", report.denied.len());
    }
    Ok(ExitCode::from(EXIT_DENIED))
}

pub fn generate(args: NetpolGenerateArgs) -> anyhow::Result<ExitCode> {
    let input = open_input(&args.recordings, &args.k8s_from, args.threads)?;
    let observed = netpol::observe(input).context("replaying the recordings")?;
    let options = GenerateOptions { namespace: args.namespace, egress: args.egress };
    write_output(args.output.as_deref(), &netpol::generate(&observed, &options))?;
    Ok(ExitCode::SUCCESS)
}

/// Files given that hold no NetworkPolicy (a misspelled `kind`, the wrong directory)
/// would judge against nothing and pass.
pub(crate) fn no_policies_is_an_error(policies: &[Policy], paths: &[PathBuf]) -> anyhow::Result<()> {
    if policies.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        anyhow::bail!("--policies {}: no NetworkPolicy found", names.join(" "));
    }
    Ok(())
}

/// The policies in a file, or in the YAML and JSON files of a directory (sorted by name).
pub(crate) fn read_policies(path: &Path) -> anyhow::Result<Vec<Policy>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files = Vec::new();
        for entry in fs_err::read_dir(path)? {
            let file = entry?.path();
            let known = file.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            if known && file.is_file() {
                files.push(file);
            }
        }
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut policies = Vec::new();
    for file in files {
        let text = fs_err::read_to_string(&file)?;
        policies.extend(parse_policies(&file.display().to_string(), &text)?);
    }
    Ok(policies)
}
