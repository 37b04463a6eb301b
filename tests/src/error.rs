//! The harness's one error type: every failure names the command that failed and what it
//! printed, so a red test says why without rerunning it by hand.

use std::io;
use std::time::Duration;

/// What can go wrong while building, using or tearing down a namespace cluster.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A system tool the harness drives is not installed.
    #[error("`{tool}` not found in PATH, /usr/sbin or /sbin: install the Debian package `{package}`")]
    ToolMissing {
        /// The program's name.
        tool: &'static str,
        /// The package that ships it.
        package: &'static str,
    },
    /// A command could not be started at all.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why `exec` failed.
        #[source]
        source: io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr (trimmed).
        stderr: String,
    },
    /// A hostNetwork pod's cgroup could not be made (no writable cgroup2 hierarchy).
    #[error("cgroup {path}: {source}")]
    Cgroup {
        /// The cgroup directory.
        path: std::path::PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The caller asked for something this cluster cannot model (a duplicate pod IP, a
    /// ClusterIP outside the service range...).
    #[error("{0}")]
    Invalid(String),
    /// A pod that is not (or no longer) part of the cluster.
    #[error("no pod {namespace}/{name} in this cluster (deleted, or never added)")]
    UnknownPod {
        /// Its Kubernetes namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A Service that is not (or no longer) part of the cluster.
    #[error("no Service {namespace}/{name} in this cluster (deleted, or never added)")]
    UnknownService {
        /// Its Kubernetes namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The `smap-e2e-peer` helper binary was not found.
    #[error(
        "the smap-e2e-peer binary was not found (looked at {searched}): build it with \
         `cargo build -p smap-e2e --bin smap-e2e-peer` (`cargo test --workspace` builds it too), \
         or set {env} to its path"
    )]
    PeerNotFound {
        /// The paths tried, comma separated.
        searched: String,
        /// The environment variable that overrides the search.
        env: &'static str,
    },
    /// The peer printed something that is not the JSON report the harness expects.
    #[error(
        "`{command}` printed no report the harness understands ({reason}); stdout: {stdout:?}; stderr: {stderr:?}"
    )]
    PeerOutput {
        /// The command line.
        command: String,
        /// What was wrong with the output.
        reason: String,
        /// Its stdout.
        stdout: String,
        /// Its stderr.
        stderr: String,
    },
    /// Something did not happen in time (a server becoming ready, a served connection).
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
    },
    /// An IO error outside any command (pipes to a spawned peer, /proc).
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl HarnessError {
    /// Wraps an IO error with what the harness was doing.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
        let context = context.into();
        move |source| HarnessError::Io { context, source }
    }
}

/// Result with [`HarnessError`].
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
