//! `smap build`: recordings (plus an optional kubectl snapshot) to a topology.

use std::io::{IsTerminal, Write};
use std::num::NonZeroUsize;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use smap_analyze::build::{fold_frames, Frame};
use smap_analyze::config::WATCH_MAP_RETENTION;
use smap_analyze::events::{replay, ChangeEvent, EmitterOptions};
use smap_analyze::html::{Page, Source};
use smap_analyze::render::{render, Format};
use smap_analyze::{build_topology, BuildInput, Config, Topology};
use smap_replay::kubectl::read_kubectl_file;
use smap_replay::{Recording, Threads};

use crate::cli::{BuildArgs, BuildFormat};
use crate::output::write_output;

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    // None: the HTML page.
    let format = match args.format {
        BuildFormat::Json => Some(Format::Json),
        BuildFormat::Dot => Some(Format::Dot),
        BuildFormat::Mermaid => Some(Format::Mermaid),
        BuildFormat::Cypher => Some(Format::Cypher),
        BuildFormat::Graphml => Some(Format::Graphml),
        BuildFormat::Html => None,
    };
    let title = page_title("smap map", &args.recordings);
    let Some(events) = &args.events else {
        let text = match format {
            Some(format) => render(&build(&args.recordings, &args.k8s_from, args.threads, config)?, format),
            None => {
                let frames = build_frames(&args.recordings, &args.k8s_from, args.threads, config)?;
                Page { title: &title, source: Source::Frames(&frames), report: None }.render()
            }
        };
        write_output(args.output.as_deref(), &text)?;
        return Ok(ExitCode::SUCCESS);
    };
    let to_stdout = events.as_os_str() == "-";
    let sink: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(fs_err::File::create(events).with_context(|| format!("creating --events {}", events.display()))?)
    };
    let options = EmitterOptions { debug_connections: args.debug_connections };
    // The replay of a watch session forgets what the session forgot.
    let mut config = config;
    config.map_retention.get_or_insert(WATCH_MAP_RETENTION);
    let topology = build_events(&args.recordings, &args.k8s_from, args.threads, config, options, sink)?;
    if args.output.is_some() || !to_stdout {
        let text = match format {
            Some(format) => render(&topology, format),
            None => Page { title: &title, source: Source::Topology(&topology), report: None }.render(),
        };
        write_output(args.output.as_deref(), &text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a config file, or the defaults.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::from_file(path).context("reading config"),
        None => Ok(Config::default()),
    }
}

/// The HTML page's title: what made it, and the names of the files it read.
pub fn page_title(what: &str, inputs: &[impl AsRef<Path>]) -> String {
    let names: Vec<String> = inputs
        .iter()
        .map(|path| {
            let path = path.as_ref();
            path.file_name().unwrap_or(path.as_os_str()).to_string_lossy().into_owned()
        })
        .collect();
    format!("{what}: {}", names.join(", "))
}

/// Frames the time slider of the HTML page steps through, the last the whole map.
const PAGE_FRAMES: usize = 24;

/// Like [`build`], also taking the map at [`PAGE_FRAMES`] moments.
fn build_frames(
    recordings: &[impl AsRef<Path>],
    k8s_from: &[impl AsRef<Path>],
    threads: Option<NonZeroUsize>,
    config: Config,
) -> anyhow::Result<Vec<Frame>> {
    let input = open_input(recordings, k8s_from, threads)?;
    let (_, frames) =
        with_progress(|progress| fold_frames(input, config, PAGE_FRAMES, progress)).context("building topology")?;
    if let Some(last) = frames.last() {
        warn_losses(&last.topology);
    }
    Ok(frames)
}

/// Opens recordings and snapshots and folds them into a topology.
pub fn build(
    recordings: &[impl AsRef<Path>],
    k8s_from: &[impl AsRef<Path>],
    threads: Option<NonZeroUsize>,
    config: Config,
) -> anyhow::Result<Topology> {
    let input = open_input(recordings, k8s_from, threads)?;
    let topology = with_progress(|progress| build_topology(input, config, progress)).context("building topology")?;
    warn_losses(&topology);
    Ok(topology)
}

/// Replays recordings as `smap watch` would have run them, writing the change events
/// as NDJSON to `sink`; returns the topology at the end. A closed pipe ends the replay
/// early and is reported as the error it is (the binary treats it as success).
pub fn build_events(
    recordings: &[impl AsRef<Path>],
    k8s_from: &[impl AsRef<Path>],
    threads: Option<NonZeroUsize>,
    config: Config,
    options: EmitterOptions,
    sink: Box<dyn Write>,
) -> anyhow::Result<Topology> {
    let input = open_input(recordings, k8s_from, threads)?;
    let mut writer = std::io::BufWriter::new(sink);
    let mut failure: Option<std::io::Error> = None;
    let mut write = |events: &[ChangeEvent]| {
        let written = events.iter().try_for_each(|event| {
            serde_json::to_writer(&mut writer, event).map_err(std::io::Error::from)?;
            writer.write_all(b"\n")
        });
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => {
                failure = Some(error);
                ControlFlow::Break(())
            }
        }
    };
    let tracker = replay(input, config, options, &mut |_| {}, &mut write).context("replaying recordings")?;
    if let Some(error) = failure {
        return Err(anyhow::Error::new(error).context("writing change events"));
    }
    writer.flush().context("writing change events")?;
    let topology = tracker.engine().topology();
    warn_losses(&topology);
    Ok(topology)
}

/// Opens recordings and reads `--k8s-from` snapshots, stamped at the recordings' start,
/// to be read on `threads` threads (default: as many as this process may use).
pub(crate) fn open_input(
    recordings: &[impl AsRef<Path>],
    k8s_from: &[impl AsRef<Path>],
    threads: Option<NonZeroUsize>,
) -> anyhow::Result<BuildInput> {
    let mut opened = Vec::new();
    for path in recordings {
        let path = path.as_ref();
        let recording = Recording::open(path).context("opening recording")?;
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
    let threads = threads.map_or_else(Threads::available, Threads::new);
    Ok(BuildInput { recordings: opened, snapshot, threads })
}

fn warn_losses(topology: &Topology) {
    let stats = &topology.stats;
    if stats.unparsed > 0 {
        tracing::warn!("{} Kubernetes objects could not be parsed and were skipped", stats.unparsed);
    }
    if stats.dropped > 0 {
        tracing::warn!("the recordings report {} kernel events lost", stats.dropped);
    }
}

/// Runs a fold with a spinner of the events folded on stderr, when it is a terminal.
fn with_progress<T>(fold: impl FnOnce(&mut dyn FnMut(u64)) -> T) -> T {
    let bar = progress_bar();
    let result = fold(&mut |n: u64| {
        if let Some(bar) = &bar {
            bar.set_position(n);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
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
