//! The command line: every flag of every command, parsed by clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where container runtimes and `ip netns` pin network namespaces.
const DEFAULT_NETNS_DIR: &str = "/var/run/netns";

/// The most pods `smap simulate` generates: a cluster far past Kubernetes' tested limit
/// (150,000 pods) that still fits in memory.
pub const MAX_SIMULATED_PODS: i64 = 1_000_000;

/// A duration longer than zero (`--checkpoint 0s` would be a timer that never waits).
fn positive_duration(text: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration = text.parse().map_err(|e| format!("{e}"))?;
    if d.is_zero() {
        return Err("must be longer than 0s".to_owned());
    }
    Ok(d)
}

/// A service map of a Kubernetes cluster from kernel connection events.
#[derive(Debug, Parser)]
#[command(name = "smap", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log lines as text, or as one JSON object per line (for Loki, Elasticsearch).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
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
    /// Analyse a topology: chains, cycles, orphans, single points of failure, a diff
    /// against a baseline and policy checks. Exit 0 clean, 1 violations (or findings
    /// given to --fail-on), 2 usage or input error.
    Analyze(AnalyzeArgs),
    /// Kubernetes NetworkPolicies against observed traffic.
    Netpol {
        /// What to do with them.
        #[command(subcommand)]
        command: NetpolCommand,
    },
    /// Load the eBPF programs and record connections and Kubernetes state (needs root).
    Capture(CaptureArgs),
    /// Run the engine live (needs root): stream change events (NDJSON), serve /healthz,
    /// /readyz, /metrics, /map and /stats, optionally record what was seen.
    Watch(WatchArgs),
    /// Print a shell completion script (`smap completions bash > /etc/bash_completion.d/smap`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `smap man > smap.1; man ./smap.1`.
    Man,
}

/// `smap netpol` commands.
#[derive(Debug, Subcommand)]
pub enum NetpolCommand {
    /// Which observed connections NetworkPolicies would deny, and which of their rules
    /// no observed traffic used. Exit 0 nothing denied, 1 denials, 2 usage or input error.
    Check(NetpolCheckArgs),
    /// NetworkPolicy YAML allowing exactly the observed traffic: one policy per
    /// workload, ingress (and with --egress, egress and DNS).
    Generate(NetpolGenerateArgs),
}

/// `smap netpol generate`.
#[derive(Debug, Args)]
pub struct NetpolGenerateArgs {
    /// Recording directories (e.g. one per node).
    #[arg(required = true, value_name = "RECORDING")]
    pub recordings: Vec<PathBuf>,
    /// `kubectl get ... -o json` output to use as the Kubernetes state at their start.
    #[arg(long, value_name = "FILE")]
    pub k8s_from: Vec<PathBuf>,
    /// Threads to read recordings on (default: the CPUs this process may use). The
    /// output is the same whatever the number.
    #[arg(long, value_name = "N")]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Only policies for workloads of this namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Restrict egress too: to the observed destinations and the cluster's DNS.
    #[arg(long)]
    pub egress: bool,
    /// Write here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `smap netpol check`.
#[derive(Debug, Args)]
pub struct NetpolCheckArgs {
    /// Recording directories (e.g. one per node).
    #[arg(required = true, value_name = "RECORDING")]
    pub recordings: Vec<PathBuf>,
    /// `kubectl get ... -o json` output to use as the Kubernetes state at their start.
    #[arg(long, value_name = "FILE")]
    pub k8s_from: Vec<PathBuf>,
    /// Threads to read recordings on (default: the CPUs this process may use). The
    /// output is the same whatever the number.
    #[arg(long, value_name = "N")]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Policies to judge instead of the recordings' own (as of the end of the window):
    /// YAML manifests (several documents each), `kubectl get networkpolicies -A -o
    /// json` output, or directories of them (`*.yaml`, `*.yml`, `*.json`).
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub policies: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = NetpolFormat::Text)]
    pub format: NetpolFormat,
    /// Write here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// How `smap netpol check` writes its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NetpolFormat {
    /// Lines for a terminal or a CI log.
    Text,
    /// The report as JSON (`denied`, `unused_rules`...).
    Json,
    /// Markdown for a pull request comment.
    Markdown,
}

/// Who may read the map of `smap watch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Auth {
    /// Anyone who reaches --listen.
    None,
    /// Requests with a bearer token that the Kubernetes API authenticates (TokenReview)
    /// and whose user RBAC lets `get` the path (SubjectAccessReview), as kube-rbac-proxy
    /// checks; the API is found as for --k8s-api (--kubeconfig, --context, in-cluster).
    Kubernetes,
    /// Requests with a bearer token listed in --token-file (clusters without the
    /// Kubernetes reviews).
    TokenFile,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal, and not with NO_COLOR).
    Text,
    /// One JSON object per line: timestamp, level, message and fields.
    Json,
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
    /// Cypher MERGE statements for Neo4j (idempotent: load every day's map into one graph).
    Cypher,
    /// GraphML, for Gephi, yEd and networkx.
    Graphml,
    /// One self-contained HTML page that draws the map, lists it as tables and steps
    /// through the recordings' time; it loads nothing, so it opens offline.
    Html,
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
    /// Threads to read recordings on (default: the CPUs this process may use). The
    /// output is the same whatever the number.
    #[arg(long, value_name = "N")]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Engine configuration (YAML, the collector config's keys).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BuildFormat::Json)]
    pub format: BuildFormat,
    /// Also print the change events (NDJSON, see docs/events.md) `smap watch` would
    /// have streamed, to FILE or `-` for stdout (the default). With `-` the topology
    /// is written only when --output is given.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub events: Option<PathBuf>,
    /// With --events: also a `network_connection` event per connection event.
    #[arg(long, requires = "events")]
    pub debug_connections: bool,
}

/// `smap simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A scenario file (YAML: services, pods, calls) to simulate.
    #[arg(long, value_name = "FILE", conflicts_with = "services")]
    pub scenario: Option<PathBuf>,
    /// Generate a cluster of this many services instead of reading a scenario.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_SIMULATED_PODS))]
    pub services: Option<u32>,
    /// Pods per generated service.
    #[arg(long, default_value_t = 2, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pods_per_service: u32,
    /// Connections to simulate (each gives about four events: both ends' open and close).
    #[arg(long, default_value_t = 10_000, value_name = "M")]
    pub connections: u64,
    /// Simulate about this many connection events instead (a quarter as many connections).
    #[arg(long, value_name = "M", conflicts_with = "connections")]
    pub events: Option<u64>,
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
    /// Keep Kubernetes objects out of the recording (only in --kubectl-out), as a
    /// capture without API access records them.
    #[arg(long, requires = "kubectl_out")]
    pub k8s_out_only: bool,
}

/// Output formats of `smap analyze`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AnalyzeFormat {
    /// Tables and chains for a terminal or a CI log.
    Text,
    /// The analysis report (smap.analysis/v1), sorted and deterministic.
    Json,
    /// Markdown for a pull request comment.
    Markdown,
    /// Graphviz DOT of the topology, cycles, single points of failure and violations in red.
    Dot,
    /// Mermaid flowchart of the topology, highlighted like DOT.
    Mermaid,
    /// The HTML map page, with the findings and the baseline diff marked on the map and
    /// the text report beside it.
    Html,
}

/// Findings `--fail-on` can fail on, besides policy violations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Policy violations (always on with --policy).
    Violations,
    /// Circular dependencies.
    Cycles,
    /// Single points of failure.
    Spof,
    /// Orphaned services.
    Orphans,
    /// Dependencies across namespaces.
    CrossNamespace,
    /// Dependencies on addresses outside the cluster.
    External,
    /// Edges with failed connection attempts.
    Failures,
    /// Anything changed since --baseline.
    Changes,
    /// Dependencies not in --baseline.
    NewDependencies,
}

/// `smap analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// One topology JSON file (from `smap build`), or recording directories to build
    /// one from.
    #[arg(required = true, value_name = "TOPOLOGY_OR_RECORDING")]
    pub inputs: Vec<PathBuf>,
    /// A topology JSON file or recording directory to diff against.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub baseline: Option<PathBuf>,
    /// A policy file (YAML, see docs/analyze.md) to check.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// With recording inputs: Kubernetes NetworkPolicies (files or directories, as
    /// `smap netpol check --policies` takes them) to judge against the observed
    /// connections; any denial fails the gate.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub policies: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = AnalyzeFormat::Text)]
    pub format: AnalyzeFormat,
    /// Also exit 1 when any of these finds something (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub fail_on: Vec<FailOn>,
    /// Write here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Rows of the single-point-of-failure and fan-in/out rankings in text and Markdown.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// A service with at most one ready endpoint is a single point of failure when its
    /// loss affects this many services.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub spof_min_affected: usize,
    /// Report traffic changes against --baseline of at least this many percent.
    #[arg(long, default_value_t = 50, value_name = "PERCENT")]
    pub shift_threshold: u32,
    /// Ignore traffic changes of dependencies with fewer attempts than this.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub shift_min_connections: u64,
    /// With recording inputs: `kubectl get pods,services,endpointslices -A -o json`
    /// output to use as the Kubernetes state at their start.
    #[arg(long, value_name = "FILE")]
    pub k8s_from: Vec<PathBuf>,
    /// Threads to read recordings on (default: the CPUs this process may use). The
    /// output is the same whatever the number.
    #[arg(long, value_name = "N")]
    pub threads: Option<std::num::NonZeroUsize>,
    /// With recording inputs: engine configuration (YAML).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Where `smap capture` and `smap watch` get Kubernetes state: `--k8s-from FILE`, else
/// the API when asked (`--k8s-api`, `--kubeconfig`, `--context`) or when a cluster is
/// found (in a pod, `$KUBECONFIG`, `~/.kube/config`) and the config's
/// `enable_k8s_discovery` is on, else none. See docs/deploy.md.
#[derive(Debug, Args)]
pub struct K8sArgs {
    /// `kubectl get pods,services,endpointslices -A -o json` output, followed for
    /// changes, instead of the Kubernetes API.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["k8s_api", "kubeconfig", "context"])]
    pub k8s_from: Option<PathBuf>,
    /// Watch the Kubernetes API (list and watch Pods, Services, EndpointSlices, Nodes,
    /// Namespaces, Ingresses, NetworkPolicies); an error if no cluster is configured.
    #[arg(long)]
    pub k8s_api: bool,
    /// Kubeconfig for the API (implies --k8s-api). Default: $KUBECONFIG or
    /// ~/.kube/config, else the pod's service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (implies --k8s-api). Default: the current context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// `smap capture`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Recording directory to create.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Stop after this long (`30s`, `10m`); default: until SIGINT or SIGTERM.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<humantime::Duration>,
    /// Where Kubernetes state comes from.
    #[command(flatten)]
    pub k8s: K8sArgs,
    /// Node name stamped on events (default: the hostname).
    #[arg(long)]
    pub node: Option<String>,
    /// cgroup v2 directory the socket hooks attach to (default: the first cgroup2 mount
    /// in /proc/mounts). In a container, the host's hierarchy mounted in (its root sees
    /// every pod).
    #[arg(long, value_name = "DIR")]
    pub cgroup_path: Option<PathBuf>,
    /// Connections the kernel tracks at once (default: the config's max_connections).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Pinned network namespaces (one per pod under containerd, CRI-O and `ip netns`)
    /// whose open connections are listed at start; entering them needs CAP_SYS_ADMIN.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_NETNS_DIR)]
    pub netns_dir: PathBuf,
    /// Engine and capture configuration (YAML).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Finalize segments this often (the journal keeps what a crash would lose of the
    /// open ones meanwhile).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = positive_duration)]
    pub checkpoint: humantime::Duration,
}

/// `smap watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Where Kubernetes state comes from.
    #[command(flatten)]
    pub k8s: K8sArgs,
    /// cgroup v2 directory the socket hooks attach to (default: the first cgroup2 mount
    /// in /proc/mounts). In a container, the host's hierarchy mounted in (its root sees
    /// every pod).
    #[arg(long, value_name = "DIR")]
    pub cgroup_path: Option<PathBuf>,
    /// Write the change events (NDJSON, see docs/events.md) here; `-` is stdout.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub events: PathBuf,
    /// Address of the HTTP endpoints (loopback by default; port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = smap_capture::live::serve::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// Also serve `/healthz` and `/readyz` here, for the kubelet: clients that fill the
    /// endpoints' connection cap cannot fail the probes on this port.
    #[arg(long, value_name = "ADDR")]
    pub probe_listen: Option<std::net::SocketAddr>,
    /// Who may read the map (`/`, `/map`, `/stats`); `/metrics` and the probes stay open.
    #[arg(long, value_enum, default_value_t = Auth::None)]
    pub auth: Auth,
    /// With `--auth token-file`: the bearer tokens allowed, one per line (`#` comments).
    #[arg(long, value_name = "FILE", required_if_eq("auth", "token-file"))]
    pub token_file: Option<PathBuf>,
    /// Also record the raw events into this new recording directory, for `smap build`.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Engine and capture configuration (YAML: the collector config's keys).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Stop after this long (`30s`, `10m`); default: until SIGINT or SIGTERM.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<humantime::Duration>,
    /// Also emit a `network_connection` event per connection event.
    #[arg(long)]
    pub debug_connections: bool,
    /// Node name stamped on events (default: the hostname).
    #[arg(long)]
    pub node: Option<String>,
    /// Connections tracked at once, by the kernel and by the engine (default: the
    /// config's max_connections).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Pinned network namespaces (one per pod under containerd, CRI-O and `ip netns`)
    /// whose open connections are listed at start; entering them needs CAP_SYS_ADMIN.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_NETNS_DIR)]
    pub netns_dir: PathBuf,
    /// With --record: finalize segments this often (the journal keeps what a crash would
    /// lose of the open ones meanwhile).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = positive_duration)]
    pub checkpoint: humantime::Duration,
    /// Push the per-dependency metrics to an OpenTelemetry collector at this URL
    /// (`http://localhost:4317` for gRPC, `http://localhost:4318` for HTTP).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport (default: http-protobuf when the URL's port is 4318, else grpc).
    #[arg(long, value_enum, requires = "otlp_endpoint")]
    pub otlp_protocol: Option<OtlpProtocolArg>,
    /// Time between OTLP exports.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = positive_duration)]
    pub otlp_interval: humantime::Duration,
}

/// OTLP transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocolArg {
    /// gRPC.
    Grpc,
    /// HTTP with protobuf bodies.
    HttpProtobuf,
}
