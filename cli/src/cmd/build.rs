//! `smap build`: recordings (plus an optional kubectl snapshot) to a topology.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use smap_analyze::render::{render, Format};
use smap_analyze::{build_topology, BuildInput, Config, Topology};
use smap_replay::kubectl::read_kubectl_file;
use smap_replay::Recording;

use crate::cli::{BuildArgs, BuildFormat};
use crate::output::write_output;

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let topology = build(&args.recordings, &args.k8s_from, config)?;
    let format = match args.format {
        BuildFormat::Json => Format::Json,
        BuildFormat::Dot => Format::Dot,
        BuildFormat::Mermaid => Format::Mermaid,
    };
    write_output(args.output.as_deref(), &render(&topology, format))?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a config file, or the defaults.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::from_file(path).context("reading config"),
        None => Ok(Config::default()),
    }
}

/// Opens recordings and snapshots and folds them into a topology.
pub fn build(
    recordings: &[impl AsRef<Path>],
    k8s_from: &[impl AsRef<Path>],
    config: Config,
) -> anyhow::Result<Topology> {
    let mut opened = Vec::new();
    for path in recordings {
        let path = path.as_ref();
        let recording = Recording::open(path).with_context(|| format!("opening recording {}", path.display()))?;
        for warning in recording.warnings() {
            tracing::warn!("{warning}");
        }
        opened.push(recording);
    }
    let time = BuildInput::snapshot_time(&opened);
    let mut snapshot = Vec::new();
    for path in k8s_from {
        let path = path.as_ref();
        let objects = read_kubectl_file(path, time).context("reading --k8s-from")?;
        if objects.skipped > 0 {
            tracing::info!("{}: skipped {} objects of kinds smap does not use", path.display(), objects.skipped);
        }
        snapshot.extend(objects.events);
    }
    let progress = progress_bar();
    let mut on_progress = |n: u64| {
        if let Some(bar) = &progress {
            bar.set_position(n);
        }
    };
    let topology = build_topology(BuildInput { recordings: opened, snapshot }, config, &mut on_progress)
        .context("building topology")?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let stats = &topology.stats;
    if stats.unparsed > 0 {
        tracing::warn!("{} Kubernetes objects could not be parsed and were skipped", stats.unparsed);
    }
    if stats.dropped > 0 {
        tracing::warn!("the recordings report {} kernel events lost", stats.dropped);
    }
    Ok(topology)
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    let style = indicatif::ProgressStyle::with_template("{spinner} {human_pos} events folded ({per_sec})").ok()?;
    bar.set_style(style);
    Some(bar)
}
