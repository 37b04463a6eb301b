//! Running programs inside pods (`ip netns exec`), and real traffic between them through
//! the `smap-e2e-peer` helper: servers that report each connection they serve, clients
//! that report their pid and source port so kernel events can be matched to them.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::error::{HarnessError, Result};
use crate::peer::{CallReport, Exchange, ServerEvent};
use crate::spec::PodRef;
use crate::sys;

/// Environment variable naming the `smap-e2e-peer` binary, overriding the search.
pub const PEER_ENV: &str = "SMAP_E2E_PEER";

/// The helper binary's name.
pub const PEER_NAME: &str = "smap-e2e-peer";

/// How long a server may take to bind and say so.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds `smap-e2e-peer` for tests of any crate: `$SMAP_E2E_PEER` if set, else next to
/// the running test executable's directory (`target/<profile>/deps/<test>` ->
/// `target/<profile>/smap-e2e-peer`), where `cargo build -p smap-e2e` and
/// `cargo test --workspace` put it. A test of another crate cannot make Cargo build
/// another package's binary, so that crate's tests need one of those to have run;
/// this crate's own tests use `env!("CARGO_BIN_EXE_smap-e2e-peer")` with
/// [`Cluster::with_peer`] instead, which Cargo guarantees is built and fresh.
pub fn peer_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(PEER_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(HarnessError::PeerNotFound { searched: format!("{} (from {PEER_ENV})", path.display()), env: PEER_ENV })
        };
    }
    let exe = std::env::current_exe().map_err(HarnessError::io("finding the running executable"))?;
    let mut searched = Vec::new();
    let dirs = exe.ancestors().skip(1).take(2);
    for dir in dirs {
        let candidate = dir.join(PEER_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        searched.push(candidate.display().to_string());
    }
    Err(HarnessError::PeerNotFound { searched: searched.join(", "), env: PEER_ENV })
}

/// Timeouts and source port of a client call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallOptions {
    /// How long a TCP connect may take (a blackholed address fails after this).
    pub connect_timeout: Duration,
    /// How long each read or write may block.
    pub timeout: Duration,
    /// Bind this TCP source port (with SO_REUSEADDR, so several clients of a pod may
    /// share it towards different servers, as a busy client's ports do); `None`: the
    /// kernel picks one.
    pub source_port: Option<u16>,
    /// UDP: send with `sendto` and read with `recvfrom` on an unbound, unconnected
    /// socket (as most DNS resolvers and statsd clients do), instead of connecting.
    pub unconnected: bool,
    /// TCP: abort once sent (SO_LINGER 0: the close sends a reset instead of a FIN),
    /// without reading a reply (call with `recv` 0).
    pub reset: bool,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            source_port: None,
            unconnected: false,
            reset: false,
        }
    }
}

impl CallOptions {
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--connect-timeout-ms".to_owned(),
            self.connect_timeout.as_millis().to_string(),
            "--timeout-ms".to_owned(),
            self.timeout.as_millis().to_string(),
        ];
        if let Some(port) = self.source_port {
            args.extend(["--source-port".to_owned(), port.to_string()]);
        }
        if self.unconnected {
            args.push("--unconnected".to_owned());
        }
        if self.reset {
            args.push("--reset".to_owned());
        }
        args
    }
}

impl Cluster {
    /// A command that runs `program` inside a pod's network namespace (and nowhere else:
    /// its sockets see only the pod's eth0 and lo), or for a hostNetwork pod in the
    /// node's namespace and the pod's cgroup. Configure and spawn it as you like.
    pub fn command_in(&self, pod: &PodRef, program: impl AsRef<OsStr>) -> Result<Command> {
        let state = self
            .pods
            .iter()
            .find(|p| p.netns == pod.netns && p.spec.namespace == pod.namespace && p.spec.name == pod.name)
            .ok_or_else(|| HarnessError::UnknownPod { namespace: pod.namespace.clone(), name: pod.name.clone() })?;
        let command = sys::netns_exec(&pod.netns, program.as_ref())?;
        Ok(match &state.host_cgroup {
            Some(cgroup) => crate::host_network::in_cgroup(cgroup, &command),
            None => command,
        })
    }

    /// A command that runs `program` in the node's namespace, as a hostNetwork pod or
    /// the kubelet would (its source address is the node IP).
    pub fn node_command(&self, program: impl AsRef<OsStr>) -> Result<Command> {
        sys::netns_exec(&self.node_netns, program.as_ref())
    }

    /// Starts `program args...` in a pod with stdout and stderr piped and stdin closed.
    /// The child's pid is the program's own (`ip netns exec` execs it). Whoever holds
    /// the `Child`, the process is killed when its pod or the cluster goes away.
    pub fn spawn_in<I, S>(&self, pod: &PodRef, program: impl AsRef<OsStr>, args: I) -> Result<Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command_in(pod, program)?;
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let command = sys::describe(&cmd);
        cmd.spawn().map_err(|source| HarnessError::Spawn { command, source })
    }

    /// The peer binary this cluster runs (set by [`Cluster::with_peer`], else
    /// [`peer_binary`]).
    pub fn peer_path(&self) -> Result<PathBuf> {
        match &self.peer {
            Some(path) => Ok(path.clone()),
            None => peer_binary(),
        }
    }

    pub(crate) fn peer_command(&self, pod: &PodRef) -> Result<Command> {
        self.command_in(pod, self.peer_path()?)
    }

    /// Starts a TCP server on `0.0.0.0:port` in a pod and waits until it listens. For
    /// each connection it reads until the client half-closes, answers the number of
    /// bytes the request's header asks for (0 without header), and reports it.
    pub fn serve_tcp(&self, pod: &PodRef, port: u16) -> Result<Server> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["serve-tcp", &port.to_string()]);
        Server::start(cmd)
    }

    /// [`Cluster::serve_tcp`] that waits `delay` before each accept(), as a busy
    /// server's full accept queue does: a connection lives in the queue, in the
    /// kernel alone, until then.
    pub fn serve_tcp_accepting_late(&self, pod: &PodRef, port: u16, delay: Duration) -> Result<Server> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["serve-tcp", &port.to_string(), "--accept-delay-ms", &delay.as_millis().to_string()]);
        Server::start(cmd)
    }

    /// Starts a UDP server on `0.0.0.0:port` in a pod and waits until it is bound. It
    /// answers each datagram (with the size its header asks for, else its own size).
    pub fn serve_udp(&self, pod: &PodRef, port: u16) -> Result<Server> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["serve-udp", &port.to_string()]);
        Server::start(cmd)
    }

    /// [`Cluster::serve_udp`] on a dual-stack socket (`[::]:port`), as Go and Java
    /// servers listen: IPv4 clients arrive as v4-mapped addresses.
    pub fn serve_udp_dual_stack(&self, pod: &PodRef, port: u16) -> Result<Server> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["serve-udp", &port.to_string(), "--dual-stack"]);
        Server::start(cmd)
    }

    /// From a pod, connects to `target` over TCP, sends exactly `send` bytes (the first
    /// eight ask the server for `recv` bytes), half-closes, and reads to EOF expecting
    /// `recv` bytes. A refused or timed-out call is an `Ok` report with `error` set.
    pub fn tcp_call(&self, pod: &PodRef, target: SocketAddrV4, send: u64, recv: u64) -> Result<CallReport> {
        self.tcp_call_with(pod, target, send, recv, CallOptions::default())
    }

    /// [`Cluster::tcp_call`] with explicit timeouts.
    pub fn tcp_call_with(
        &self,
        pod: &PodRef,
        target: SocketAddrV4,
        send: u64,
        recv: u64,
        options: CallOptions,
    ) -> Result<CallReport> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["tcp-call", &target.to_string(), &send.to_string(), &recv.to_string()]).args(options.args());
        run_call(cmd)
    }

    /// From a pod, resolves `name` with the C library's resolver (the pod's resolv.conf,
    /// see [`Cluster::use_nameserver`]) and makes a [`Cluster::tcp_call`] to its IPv4
    /// answer at `pick` (of the sorted answers, modulo their count) on `port`.
    pub fn tcp_call_by_name(
        &self,
        pod: &PodRef,
        name: &str,
        port: u16,
        pick: usize,
        send: u64,
        recv: u64,
    ) -> Result<CallReport> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["tcp-call", &format!("{name}:{port}"), &send.to_string(), &recv.to_string()])
            .args(["--pick", &pick.to_string()])
            .args(CallOptions::default().args());
        run_call(cmd)
    }

    /// From a pod, sends one UDP datagram of `send` bytes to `target` and waits for the
    /// answer, expecting `recv` bytes (a DNS-like exchange).
    pub fn udp_call(&self, pod: &PodRef, target: SocketAddrV4, send: u64, recv: u64) -> Result<CallReport> {
        self.udp_call_with(pod, target, send, recv, CallOptions::default())
    }

    /// [`Cluster::udp_call`] with explicit timeouts (`timeout` bounds the wait).
    pub fn udp_call_with(
        &self,
        pod: &PodRef,
        target: SocketAddrV4,
        send: u64,
        recv: u64,
        options: CallOptions,
    ) -> Result<CallReport> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["udp-call", &target.to_string(), &send.to_string(), &recv.to_string()]).args(options.args());
        run_call(cmd)
    }

    /// From a pod, opens a connected UDP socket to `target` and holds it until
    /// [`HeldConnection::release`] (or drop); each [`HeldConnection::send`] sends one
    /// datagram of that size and waits for its equally long answer.
    pub fn udp_hold(&self, pod: &PodRef, target: SocketAddrV4) -> Result<HeldConnection> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["udp-hold", &target.to_string()]).args(CallOptions::default().args());
        HeldConnection::start(cmd)
    }

    /// From a pod, opens a TCP connection to `target` and holds it until
    /// [`HeldConnection::release`] (or drop). Returns once connected (or failed).
    pub fn tcp_hold(&self, pod: &PodRef, target: SocketAddrV4) -> Result<HeldConnection> {
        self.tcp_hold_with(pod, target, CallOptions::default())
    }

    /// [`Cluster::tcp_hold`] with options (a fixed source port, say).
    pub fn tcp_hold_with(&self, pod: &PodRef, target: SocketAddrV4, options: CallOptions) -> Result<HeldConnection> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["tcp-hold", &target.to_string()]).args(options.args());
        HeldConnection::start(cmd)
    }
}

/// Runs a client to completion and parses its report.
pub(crate) fn run_call(mut cmd: Command) -> Result<CallReport> {
    let command = sys::describe(&cmd);
    let output =
        cmd.stdin(Stdio::null()).output().map_err(|source| HarnessError::Spawn { command: command.clone(), source })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let Some(line) = stdout.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Err(HarnessError::PeerOutput {
            command,
            reason: format!("nothing on stdout, {}", output.status),
            stdout,
            stderr,
        });
    };
    match serde_json::from_str::<CallReport>(line) {
        Ok(report) => Ok(report),
        Err(e) => Err(HarnessError::PeerOutput { command, reason: e.to_string(), stdout, stderr }),
    }
}

/// A server running in a pod. Dropping it kills it.
#[derive(Debug)]
pub struct Server {
    child: Child,
    events: Receiver<std::result::Result<ServerEvent, String>>,
    pid: u32,
    local: SocketAddr,
    command: String,
}

impl Server {
    pub(crate) fn start(mut cmd: Command) -> Result<Server> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let command = sys::describe(&cmd);
        let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn { command: command.clone(), source })?;
        let Some(stdout) = child.stdout.take() else {
            return Err(HarnessError::Invalid("server stdout was not piped".to_owned()));
        };
        let (tx, events) = mpsc::channel();
        // A reader thread, so a test can wait for a served connection with a timeout.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event = serde_json::from_str::<ServerEvent>(&line).map_err(|e| format!("{e}: {line:?}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let mut server = Server { child, events, pid: 0, local: SocketAddr::from(([0, 0, 0, 0], 0)), command };
        match server.next_event(READY_TIMEOUT, "the server to listen")? {
            ServerEvent::Ready { pid, local } => {
                server.pid = pid;
                server.local = local;
                Ok(server)
            }
            other => Err(server.output_error(format!("expected a ready line, got {other:?}"))),
        }
    }

    fn output_error(&self, reason: String) -> HarnessError {
        HarnessError::PeerOutput { command: self.command.clone(), reason, stdout: String::new(), stderr: String::new() }
    }

    fn next_event(&mut self, timeout: Duration, what: &str) -> Result<ServerEvent> {
        match self.events.recv_timeout(timeout) {
            Ok(Ok(event)) => Ok(event),
            Ok(Err(reason)) => Err(self.output_error(reason)),
            Err(RecvTimeoutError::Timeout) => Err(HarnessError::Timeout { what: what.to_owned(), timeout }),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten().map(|s| s.to_string());
                Err(self.output_error(format!(
                    "the server exited ({}) before {what}",
                    status.as_deref().unwrap_or("still running")
                )))
            }
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The address it is bound to (`0.0.0.0:port`).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the next connection (TCP) or datagram (UDP) the server handled.
    pub fn next_exchange(&mut self, timeout: Duration) -> Result<Exchange> {
        match self.next_event(timeout, "a served exchange")? {
            ServerEvent::Tcp(exchange) | ServerEvent::Udp(exchange) => Ok(exchange),
            other => Err(self.output_error(format!("unexpected server line {other:?}"))),
        }
    }

    /// The next `n` exchanges, waiting up to `timeout` for each: a server reports an
    /// exchange only after its client may already have returned.
    pub fn wait_exchanges(&mut self, n: usize, timeout: Duration) -> Result<Vec<Exchange>> {
        (0..n).map(|_| self.next_exchange(timeout)).collect()
    }

    /// Every exchange reported so far that was not yet taken, without waiting.
    pub fn exchanges(&mut self) -> Result<Vec<Exchange>> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            match event.map_err(|reason| self.output_error(reason))? {
                ServerEvent::Tcp(exchange) | ServerEvent::Udp(exchange) => out.push(exchange),
                ServerEvent::Ready { .. } => {}
            }
        }
        Ok(out)
    }

    /// Kills the server and reaps it.
    pub fn stop(mut self) -> Result<()> {
        self.kill()
    }

    fn kill(&mut self) -> Result<()> {
        if self.child.try_wait().ok().flatten().is_none() {
            // Already dead (its pod was deleted) is fine.
            let _ = self.child.kill();
        }
        self.child.wait().map(drop).map_err(HarnessError::io(format!("reaping `{}`", self.command)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A TCP connection or connected UDP socket held open by a client in a pod. Dropping
/// it kills the client (the kernel then closes the socket).
#[derive(Debug)]
pub struct HeldConnection {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    report: Option<CallReport>,
    command: String,
}

impl HeldConnection {
    fn start(mut cmd: Command) -> Result<HeldConnection> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let command = sys::describe(&cmd);
        let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn { command: command.clone(), source })?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            return Err(HarnessError::Invalid(format!("`{command}`: stdout was not piped")));
        };
        let mut held = HeldConnection { child, stdin, stdout: BufReader::new(stdout), report: None, command };
        held.report = Some(held.read_report()?);
        Ok(held)
    }

    fn read_report(&mut self) -> Result<CallReport> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(HarnessError::io(format!("reading `{}`", self.command)))?;
        serde_json::from_str(line.trim()).map_err(|e| HarnessError::PeerOutput {
            command: self.command.clone(),
            reason: e.to_string(),
            stdout: line.clone(),
            stderr: String::new(),
        })
    }

    /// What the client reported on connecting (pid, source port, or why it failed), or
    /// after its last [`HeldConnection::send`].
    pub fn report(&self) -> Option<&CallReport> {
        self.report.as_ref()
    }

    /// Sends `bytes` on the open connection and waits until they are written.
    pub fn send(&mut self, bytes: u64) -> Result<&CallReport> {
        use std::io::Write;
        let stdin = self.stdin.as_mut().ok_or_else(|| HarnessError::Invalid("tcp-hold was released".to_owned()))?;
        writeln!(stdin, "{bytes}")
            .and_then(|()| stdin.flush())
            .map_err(HarnessError::io(format!("writing to `{}`", self.command)))?;
        let report = self.read_report()?;
        if !report.is_ok() {
            return Err(HarnessError::Invalid(format!("sending on a held connection failed: {report:?}")));
        }
        Ok(self.report.insert(report))
    }

    /// Closes the connection gracefully (half-close, read to EOF) and returns the final
    /// report; a connection that never opened returns its failure report.
    pub fn release(mut self) -> Result<CallReport> {
        // EOF on the client's stdin is its signal to close.
        drop(self.stdin.take());
        let first = self.report.take();
        let last = match first.as_ref() {
            Some(report) if !report.is_ok() => first.clone(),
            _ => Some(self.read_report()?),
        };
        let _ = self.child.wait();
        last.ok_or_else(|| HarnessError::Invalid("tcp-hold printed no report".to_owned()))
    }
}

impl Drop for HeldConnection {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
