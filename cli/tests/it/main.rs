//! CLI tests: the `smap` binary as users run it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod aborts;
mod analyze;
mod build;
mod clock_step;
mod crash;
mod deploy;
mod dns;
mod e2e;
mod entry;
mod exports;
mod grafana;
mod host_network;
mod ingress;
mod kernels;
mod logs;
mod long_lived;
mod map_page;
mod netpol;
mod processes;
mod prometheus;
mod stall;
mod udp;
mod watch;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn smap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smap")).args(args).current_dir(repo()).output().unwrap()
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A failure as users must see it: exit 2, one `error: ...` line, never a panic.
pub fn assert_input_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}
