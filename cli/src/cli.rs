//! The command line: every flag of every command, parsed by clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A service map of a Kubernetes cluster from kernel connection events.
#[derive(Debug, Parser)]
#[command(name = "smap", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// smap's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a topology from one or many recordings, offline.
    Build(BuildArgs),
    /// Write a simulated recording of a described or generated cluster.
    Simulate(SimulateArgs),
}

/// Output formats of `smap build`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BuildFormat {
    /// Topology JSON (smap.topology/v1), sorted and deterministic.
    Json,
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// `smap build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Recording directories (one per node is typical).
    #[arg(required = true, value_name = "RECORDING")]
    pub recordings: Vec<PathBuf>,
    /// `kubectl get pods,services,endpointslices -A -o json` output to use as the
    /// Kubernetes state at the start of the recordings.
    #[arg(long, value_name = "FILE")]
    pub k8s_from: Vec<PathBuf>,
    /// Engine configuration (YAML, the collector config's keys).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BuildFormat::Json)]
    pub format: BuildFormat,
}

/// `smap simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A scenario file (YAML: services, pods, calls) to simulate.
    #[arg(long, value_name = "FILE", conflicts_with = "services")]
    pub scenario: Option<PathBuf>,
    /// Generate a cluster of this many services instead of reading a scenario.
    #[arg(long, value_name = "N")]
    pub services: Option<u32>,
    /// Pods per generated service.
    #[arg(long, default_value_t = 2, value_name = "K")]
    pub pods_per_service: u32,
    /// Connections to simulate.
    #[arg(long, default_value_t = 10_000, value_name = "M")]
    pub connections: u64,
    /// Pod replacements (with IP reuse) per 1,000 connections.
    #[arg(long, default_value_t = 1.0, value_name = "RATE")]
    pub churn: f64,
    /// External endpoints called by generated services.
    #[arg(long, default_value_t = 2, value_name = "X")]
    pub externals: u32,
    /// Random seed: the same seed gives the same recording.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Recording directory to create.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Also write the Kubernetes objects at the start as kubectl List JSON here.
    #[arg(long, value_name = "FILE")]
    pub kubectl_out: Option<PathBuf>,
}
