//! Running the system tools the harness drives (`ip`, `iptables-restore`, `sh`) and the
//! few syscalls it needs, with errors that carry the command line and its stderr.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::error::{HarnessError, Result};

/// A tool the harness runs, and the Debian package that ships it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tool {
    pub(crate) name: &'static str,
    pub(crate) package: &'static str,
}

pub(crate) const IP: Tool = Tool { name: "ip", package: "iproute2" };
pub(crate) const IPTABLES: Tool = Tool { name: "iptables", package: "iptables" };
pub(crate) const IPTABLES_RESTORE: Tool = Tool { name: "iptables-restore", package: "iptables" };
pub(crate) const IPTABLES_SAVE: Tool = Tool { name: "iptables-save", package: "iptables" };
pub(crate) const SH: Tool = Tool { name: "sh", package: "dash" };

/// Every tool [`crate::require_root`] checks for.
pub(crate) const REQUIRED: [Tool; 4] = [IP, IPTABLES, IPTABLES_RESTORE, IPTABLES_SAVE];

/// Finds a tool in PATH, then in the sbin directories: `cargo test` run through sudo or
/// from an IDE often has a PATH without /usr/sbin, where iproute2 and iptables live.
pub(crate) fn find(tool: Tool) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fallback = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path).chain(fallback).map(|dir| dir.join(tool.name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A [`Command`] for a tool, resolved once per process.
pub(crate) fn command(tool: Tool) -> Result<Command> {
    static CACHE: OnceLock<Mutex<Vec<(&'static str, PathBuf)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, path)) = cache.iter().find(|(name, _)| *name == tool.name) {
        return Ok(Command::new(path));
    }
    let path = find(tool).ok_or(HarnessError::ToolMissing { tool: tool.name, package: tool.package })?;
    cache.push((tool.name, path.clone()));
    Ok(Command::new(path))
}

/// `ip [-n NETNS] ARGS...`.
pub(crate) fn ip<I, S>(netns: Option<&str>, args: I) -> Result<Command>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = command(IP)?;
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args);
    Ok(cmd)
}

/// `ip netns exec NETNS PROGRAM`: `ip` execs the program after `setns`, so the child's
/// pid is the program's own pid.
pub(crate) fn netns_exec(netns: &str, program: &OsStr) -> Result<Command> {
    ip(None, [OsStr::new("netns"), OsStr::new("exec"), OsStr::new(netns), program])
}

/// The command line, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs a command to completion, with `input` on its stdin; fails unless it exits 0.
pub(crate) fn run(cmd: &mut Command, input: Option<&str>) -> Result<Output> {
    let command = describe(cmd);
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn { command: command.clone(), source })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A tool that dies early closes the pipe; its stderr then says why, so a write
        // error here is not the interesting one.
        let _ = stdin.write_all(text.as_bytes());
    }
    let output = child.wait_with_output().map_err(HarnessError::io(format!("waiting for `{command}`")))?;
    if !output.status.success() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if let Some(text) = input {
            // `ip -batch` and `iptables-restore` name a line number; show the lines.
            stderr.push_str("\n--- input ---\n");
            stderr.push_str(text);
        }
        return Err(HarnessError::Command { command, status: output.status.to_string(), stderr });
    }
    Ok(output)
}

/// Serializes `ip netns add/del`: the first `ip netns add` of a boot makes /run/netns a
/// shared mount, and two doing that at once can fail with EBUSY.
fn netns_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `ip netns add NAME`.
pub(crate) fn netns_add(name: &str) -> Result<()> {
    let _guard = netns_lock();
    run(&mut ip(None, ["netns", "add", name])?, None).map(drop)
}

/// `ip netns del NAME`, after killing every process still inside (a namespace lives on
/// while a process holds it, and with it its veths and their routes).
pub(crate) fn netns_del(name: &str) -> Result<()> {
    kill_all_in(name);
    let _guard = netns_lock();
    // The files `ip netns exec` bind-mounts into it (resolv.conf), if a test wrote any.
    let _ = std::fs::remove_dir_all(netns_etc(name));
    run(&mut ip(None, ["netns", "del", name])?, None).map(drop)
}

/// `/etc/netns/NAME`: `ip netns exec NAME` bind-mounts each file in it over its
/// namesake in /etc, as kubelet gives each pod its own resolv.conf.
pub(crate) fn netns_etc(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/etc/netns").join(name)
}

/// The names under /run/netns, from `ip netns list` ("name (id: 3)" lines).
pub(crate) fn netns_list() -> Result<Vec<String>> {
    let output = run(&mut ip(None, ["netns", "list"])?, None)?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// SIGKILLs every process inside a namespace (`ip netns pids`), whoever holds its
/// `Child` handle. Best effort: a namespace that is already gone has no processes.
pub(crate) fn kill_all_in(netns: &str) {
    let Ok(mut cmd) = ip(None, ["netns", "pids", netns]) else { return };
    let Ok(output) = run(&mut cmd, None) else { return };
    for pid in String::from_utf8_lossy(&output.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        kill(pid);
    }
}

/// SIGKILL to one process.
pub(crate) fn kill(pid: i32) {
    if pid > 0 {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Whether a process with this pid exists (it may belong to another user: EPERM).
pub(crate) fn process_exists(pid: i32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// Writes sysctls inside a namespace (`/proc/sys/net` shows the namespace of the
/// process reading it); keys a kernel lacks (no IPv6) are skipped.
pub(crate) fn write_sysctls(netns: &str, settings: &[(&str, &str)]) -> Result<()> {
    let script: Vec<String> = settings
        .iter()
        .map(|(key, value)| format!("if [ -e /proc/sys/{key} ]; then echo {value} > /proc/sys/{key}; fi"))
        .collect();
    let mut cmd = netns_exec(netns, command(SH)?.get_program())?;
    cmd.args(["-e", "-c", &script.join("\n")]);
    run(&mut cmd, None).map(drop)
}

/// `ip -n NETNS -batch -`: several changes for one process.
pub(crate) fn ip_batch(netns: &str, lines: &[String]) -> Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    run(&mut ip(Some(netns), ["-batch", "-"])?, Some(&text)).map(drop)
}
