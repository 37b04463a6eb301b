//! smap-capture's integration tests, one binary (modules below) so they build once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests: a panic is the failure report, and skips are announced on stderr"
)]

mod access;
mod deploy;
mod http_limits;
mod k8s_api;
mod kernel;
mod open_conns;
mod otlp;

/// Tests that load the kernel capture, or flood the machine with connections, take
/// turns: a capture sees every socket, and a flood beside it would overrun its ring.
pub(crate) static MACHINE_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
