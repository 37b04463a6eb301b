//! The programs smap attaches, where each attaches, which are required, and what
//! the capture loses without an optional one; and attaching them.
//!
//! UDP datagrams are seen by one of two sets of programs (ebpf/src/udp.bpf.h): kernel
//! functions, which see each packet's addresses, or the cgroup hooks with the socket
//! length tracepoints where a kernel refuses fentry (lockdown) or lacks a function.
//! Never both: each counts every datagram.

use std::fs::File;

use aya::programs::{
    BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, FEntry, ProgramError, TracePoint,
    TracePointError,
};
use aya::{Btf, BtfError, Ebpf};
use smap_ebpf::programs;

use super::{KernelError, SkippedHook};

/// How a program attaches.
#[derive(Clone, Copy, Debug)]
pub(super) enum Attach {
    /// BTF-typed raw tracepoint (`tp_btf/NAME`).
    BtfTracepoint { category: &'static str, name: &'static str },
    /// Classic tracepoint via tracefs (`tracepoint/CATEGORY/NAME`).
    Tracepoint { category: &'static str, name: &'static str },
    /// cgroup socket-address hook on the cgroup2 root.
    Cgroup,
    /// cgroup packet hook on the cgroup2 root, for packets delivered to sockets.
    CgroupSkbIngress,
    /// On entry to a kernel function (`fentry/NAME`).
    FEntry { function: &'static str },
}

/// Which programs a hook belongs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Group {
    /// Attached on its own.
    Own,
    /// One of the UDP datagram programs on kernel functions: all or none.
    UdpFunctions,
    /// One of the UDP datagram programs on cgroup hooks and tracepoints, attached when
    /// the function set is not.
    UdpTracepoints,
}

/// How the capture sees UDP datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UdpPath {
    /// Kernel functions: every datagram with its packet's addresses.
    Functions,
    /// cgroup hooks and socket tracepoints: an unbound socket's local address is not
    /// seen (it is looked up per network namespace, where the process is visible).
    Tracepoints,
    /// Neither set attached: only connected UDP sockets, as flows without datagrams.
    #[default]
    None,
}

impl UdpPath {
    /// The name in logs and `/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Functions => "functions",
            Self::Tracepoints => "tracepoints",
            Self::None => "none",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Hook {
    pub(super) program: &'static str,
    pub(super) section: &'static str,
    attach: Attach,
    /// Required hooks fail the start; the others are skipped with their consequence.
    pub(super) required: bool,
    pub(super) group: Group,
    pub(super) purpose: &'static str,
}

pub(super) const HOOKS: [Hook; 18] = [
    Hook {
        program: programs::INET_SOCK_SET_STATE,
        section: "tp_btf/inet_sock_set_state",
        attach: Attach::BtfTracepoint { category: "sock", name: "inet_sock_set_state" },
        required: true,
        group: Group::Own,
        purpose: "TCP connects, closes and failed connects",
    },
    Hook {
        program: programs::WAKE_READER,
        section: "tp_btf/inet_sock_set_state",
        attach: Attach::BtfTracepoint { category: "sock", name: "inet_sock_set_state" },
        required: false,
        group: Group::Own,
        purpose: "early wakeups of the reader under load (it still drains on its timer)",
    },
    Hook {
        program: programs::SYS_EXIT_ACCEPT4,
        section: "tracepoint/syscalls/sys_exit_accept4",
        attach: Attach::Tracepoint { category: "syscalls", name: "sys_exit_accept4" },
        required: true,
        group: Group::Own,
        purpose: "the server process of TCP connections",
    },
    Hook {
        program: programs::SYS_EXIT_ACCEPT,
        section: "tracepoint/syscalls/sys_exit_accept",
        attach: Attach::Tracepoint { category: "syscalls", name: "sys_exit_accept" },
        // arm64 has no accept syscall, only accept4.
        required: false,
        group: Group::Own,
        purpose: "the server process of connections accepted with accept() instead of accept4()",
    },
    Hook {
        program: programs::CONNECT4,
        section: "cgroup/connect4",
        attach: Attach::Cgroup,
        required: false,
        group: Group::Own,
        purpose: "connected UDP sockets (IPv4)",
    },
    Hook {
        program: programs::CONNECT6,
        section: "cgroup/connect6",
        attach: Attach::Cgroup,
        required: false,
        group: Group::Own,
        purpose: "connected UDP sockets (IPv6)",
    },
    Hook {
        program: programs::SENDMSG4,
        section: "cgroup/sendmsg4",
        attach: Attach::Cgroup,
        required: false,
        group: Group::UdpTracepoints,
        purpose: "UDP datagrams sent (IPv4)",
    },
    Hook {
        program: programs::SENDMSG6,
        section: "cgroup/sendmsg6",
        attach: Attach::Cgroup,
        required: false,
        group: Group::UdpTracepoints,
        purpose: "UDP datagrams sent (IPv6)",
    },
    Hook {
        program: programs::RECVMSG4,
        section: "cgroup/recvmsg4",
        attach: Attach::Cgroup,
        required: false,
        group: Group::UdpTracepoints,
        purpose: "UDP datagrams received (IPv4)",
    },
    Hook {
        program: programs::RECVMSG6,
        section: "cgroup/recvmsg6",
        attach: Attach::Cgroup,
        required: false,
        group: Group::UdpTracepoints,
        purpose: "UDP datagrams received (IPv6)",
    },
    Hook {
        program: programs::SOCK_SEND_LENGTH,
        section: "tp_btf/sock_send_length",
        attach: Attach::BtfTracepoint { category: "sock", name: "sock_send_length" },
        required: false,
        group: Group::UdpTracepoints,
        purpose: "UDP bytes sent, and datagrams of connected UDP sockets (Linux 6.4+)",
    },
    Hook {
        program: programs::SOCK_RECV_LENGTH,
        section: "tp_btf/sock_recv_length",
        attach: Attach::BtfTracepoint { category: "sock", name: "sock_recv_length" },
        required: false,
        group: Group::UdpTracepoints,
        purpose: "UDP bytes received, and datagrams of connected UDP sockets (Linux 6.4+)",
    },
    Hook {
        program: programs::IP_SEND_SKB,
        section: "fentry/ip_send_skb",
        attach: Attach::FEntry { function: "ip_send_skb" },
        required: false,
        group: Group::UdpFunctions,
        purpose: "UDP datagrams sent (IPv4), with the source address the route chose",
    },
    Hook {
        program: programs::IP6_SEND_SKB,
        section: "fentry/ip6_send_skb",
        attach: Attach::FEntry { function: "ip6_send_skb" },
        required: false,
        group: Group::UdpFunctions,
        purpose: "UDP datagrams sent (IPv6), with the source address the route chose",
    },
    Hook {
        program: programs::SKB_CONSUME_UDP,
        section: "fentry/skb_consume_udp",
        attach: Attach::FEntry { function: "skb_consume_udp" },
        required: false,
        group: Group::UdpFunctions,
        purpose: "UDP datagrams received, with the address they were sent to",
    },
    Hook {
        program: programs::TCP_PROBE,
        section: "tp_btf/tcp_probe",
        attach: Attach::BtfTracepoint { category: "tcp", name: "tcp_probe" },
        required: false,
        group: Group::Own,
        purpose: "TCP connections open before capture (on their first bytes) and the bytes of open ones",
    },
    Hook {
        program: programs::TCP_RCV_SPACE_ADJUST,
        section: "tp_btf/tcp_rcv_space_adjust",
        attach: Attach::BtfTracepoint { category: "tcp", name: "tcp_rcv_space_adjust" },
        required: false,
        group: Group::Own,
        purpose: "the reading process of TCP connections open before capture",
    },
    Hook {
        program: programs::DNS_REPLY,
        section: "cgroup_skb/ingress",
        attach: Attach::CgroupSkbIngress,
        required: false,
        group: Group::Own,
        purpose: "DNS names of outside addresses (the replies clients receive)",
    },
];

/// What attaching the hooks gave.
#[derive(Debug)]
pub(super) struct Attached {
    pub(super) programs: Vec<&'static str>,
    pub(super) skipped: Vec<SkippedHook>,
    pub(super) udp: UdpPath,
}

impl Attached {
    fn skip(&mut self, hook: &Hook, consequence: &'static str, reason: String) {
        self.skipped.push(SkippedHook { program: hook.program, hook: hook.section, consequence, reason });
    }
}

/// Attaches every hook: required ones or an error, optional ones where the kernel
/// allows, and one of the two UDP datagram sets.
pub(super) fn attach_all(ebpf: &mut Ebpf, btf: &Btf, cgroup: Result<&File, &String>) -> Result<Attached, KernelError> {
    let mut out = Attached { programs: Vec::new(), skipped: Vec::new(), udp: UdpPath::None };
    for hook in HOOKS.iter().filter(|h| h.group == Group::Own) {
        match attach(ebpf, btf, cgroup, *hook) {
            Ok(()) => out.programs.push(hook.program),
            Err(e) if hook.required => return Err(too_old(e)),
            Err(e) => {
                tracing::warn!(hook = hook.section, error = %e, "optional hook not attached: capture continues without {}", hook.purpose);
                out.skip(hook, hook.purpose, e.to_string());
            }
        }
    }
    let functions: Vec<&Hook> = HOOKS.iter().filter(|h| h.group == Group::UdpFunctions).collect();
    let mut refused = None;
    let mut done = Vec::new();
    for hook in &functions {
        match attach(ebpf, btf, cgroup, **hook) {
            Ok(()) => done.push(hook.program),
            Err(e) => {
                refused = Some(format!("{}: {e}", hook.section));
                break;
            }
        }
    }
    let Some(reason) = refused else {
        out.programs.extend(done);
        out.udp = UdpPath::Functions;
        return Ok(out);
    };
    // Half a set would count some datagrams twice once the other set attaches.
    for name in done {
        if let Some(p) = ebpf.program_mut(name) {
            let p: Result<&mut FEntry, _> = p.try_into();
            if let Ok(p) = p {
                p.unload().map_err(|source| KernelError::Program { program: name, what: "unload", source })?;
            }
        }
    }
    tracing::info!(reason = %reason, "UDP datagrams through cgroup hooks and tracepoints: the kernel function hooks did not attach");
    for hook in &functions {
        out.skip(
            hook,
            "each datagram's own addresses (the cgroup hooks and tracepoints count it instead)",
            reason.clone(),
        );
    }
    for hook in HOOKS.iter().filter(|h| h.group == Group::UdpTracepoints) {
        match attach(ebpf, btf, cgroup, *hook) {
            Ok(()) => {
                out.programs.push(hook.program);
                out.udp = UdpPath::Tracepoints;
            }
            Err(e) => {
                tracing::warn!(hook = hook.section, error = %e, "optional hook not attached: capture continues without {}", hook.purpose);
                out.skip(hook, hook.purpose, e.to_string());
            }
        }
    }
    Ok(out)
}

/// Loads and attaches one program.
fn attach(ebpf: &mut Ebpf, btf: &Btf, cgroup: Result<&File, &String>, hook: Hook) -> Result<(), KernelError> {
    let program = ebpf
        .program_mut(hook.program)
        .ok_or_else(|| KernelError::MissingFromObject(format!("program {}", hook.program)))?;
    let step =
        |what: &'static str| move |source: ProgramError| KernelError::Program { program: hook.program, what, source };
    match hook.attach {
        Attach::BtfTracepoint { category, name } => {
            let p: &mut BtfTracePoint = program.try_into().map_err(step("load"))?;
            p.load(name, btf).map_err(|e| match e {
                ProgramError::Btf(BtfError::UnknownBtfTypeName { .. }) => {
                    KernelError::TracepointMissing { category, name, purpose: hook.purpose }
                }
                e => load_error(hook, e),
            })?;
            p.attach().map_err(step("attach"))?;
        }
        Attach::Tracepoint { category, name } => {
            let p: &mut TracePoint = program.try_into().map_err(step("load"))?;
            p.load().map_err(|e| load_error(hook, e))?;
            p.attach(category, name).map_err(|e| match e {
                ProgramError::TracePointError(TracePointError::FileError { io_error, .. })
                    if io_error.kind() == std::io::ErrorKind::NotFound =>
                {
                    KernelError::TracepointMissing { category, name, purpose: hook.purpose }
                }
                e => KernelError::Program { program: hook.program, what: "attach", source: e },
            })?;
        }
        Attach::Cgroup => {
            let dir = cgroup.map_err(|reason| KernelError::NoCgroup(reason.clone()))?;
            let p: &mut CgroupSockAddr = program.try_into().map_err(step("load"))?;
            p.load().map_err(|e| load_error(hook, e))?;
            // Links are always multi-attach: other cgroup programs (a CNI's) keep running.
            p.attach(dir, CgroupAttachMode::Single).map_err(step("attach"))?;
        }
        Attach::CgroupSkbIngress => {
            let dir = cgroup.map_err(|reason| KernelError::NoCgroup(reason.clone()))?;
            let p: &mut CgroupSkb = program.try_into().map_err(step("load"))?;
            p.load().map_err(|e| load_error(hook, e))?;
            p.attach(dir, CgroupSkbAttachType::Ingress, CgroupAttachMode::Single).map_err(step("attach"))?;
        }
        Attach::FEntry { function } => {
            let p: &mut FEntry = program.try_into().map_err(step("load"))?;
            p.load(function, btf).map_err(|e| match e {
                ProgramError::Btf(BtfError::UnknownBtfTypeName { .. }) => {
                    KernelError::FunctionMissing { function, purpose: hook.purpose }
                }
                e => load_error(hook, e),
            })?;
            p.attach().map_err(step("attach"))?;
        }
    }
    Ok(())
}

/// A required program the verifier refused for a helper it does not know is a kernel
/// older than smap supports: say that, in one line, instead of the verifier's log.
fn too_old(e: KernelError) -> KernelError {
    let KernelError::Verifier { program, log, .. } = &e else { return e };
    let Some(missing) = log.lines().find(|l| l.starts_with("invalid func") || l.starts_with("unknown func")) else {
        return e;
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    KernelError::KernelTooOld { release, program, missing: missing.trim().to_owned() }
}

fn load_error(hook: Hook, e: ProgramError) -> KernelError {
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            KernelError::Verifier { program: hook.program, source: io_error, log: verifier_log.to_string() }
        }
        e => KernelError::Program { program: hook.program, what: "load", source: e },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn hooks_name_distinct_programs_and_only_tcp_is_required() {
        let names: HashSet<&str> = HOOKS.iter().map(|h| h.program).collect();
        assert_eq!(names.len(), HOOKS.len());
        let required: Vec<&str> = HOOKS.iter().filter(|h| h.required).map(|h| h.program).collect();
        assert_eq!(required, [programs::INET_SOCK_SET_STATE, programs::SYS_EXIT_ACCEPT4]);
    }
}
