//! The programs smap attaches, where each attaches, which are required, and what
//! the capture loses without an optional one; and attaching them.

use std::fs::File;

use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSockAddr, ProgramError, TracePoint, TracePointError};
use aya::{Btf, BtfError, Ebpf};
use smap_ebpf::programs;

use super::KernelError;

/// How a program attaches.
#[derive(Clone, Copy, Debug)]
pub(super) enum Attach {
    /// BTF-typed raw tracepoint (`tp_btf/NAME`).
    BtfTracepoint { category: &'static str, name: &'static str },
    /// Classic tracepoint via tracefs (`tracepoint/CATEGORY/NAME`).
    Tracepoint { category: &'static str, name: &'static str },
    /// cgroup socket-address hook on the cgroup2 root.
    Cgroup,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Hook {
    pub(super) program: &'static str,
    pub(super) section: &'static str,
    attach: Attach,
    /// Required hooks fail the start; the others are skipped with their consequence.
    pub(super) required: bool,
    pub(super) purpose: &'static str,
}

pub(super) const HOOKS: [Hook; 14] = [
    Hook {
        program: programs::INET_SOCK_SET_STATE,
        section: "tp_btf/inet_sock_set_state",
        attach: Attach::BtfTracepoint { category: "sock", name: "inet_sock_set_state" },
        required: true,
        purpose: "TCP connects, closes and failed connects",
    },
    Hook {
        program: programs::WAKE_READER,
        section: "tp_btf/inet_sock_set_state",
        attach: Attach::BtfTracepoint { category: "sock", name: "inet_sock_set_state" },
        required: false,
        purpose: "early wakeups of the reader under load (it still drains on its timer)",
    },
    Hook {
        program: programs::SYS_EXIT_ACCEPT4,
        section: "tracepoint/syscalls/sys_exit_accept4",
        attach: Attach::Tracepoint { category: "syscalls", name: "sys_exit_accept4" },
        required: true,
        purpose: "the server process of TCP connections",
    },
    Hook {
        program: programs::SYS_EXIT_ACCEPT,
        section: "tracepoint/syscalls/sys_exit_accept",
        attach: Attach::Tracepoint { category: "syscalls", name: "sys_exit_accept" },
        // arm64 has no accept syscall, only accept4.
        required: false,
        purpose: "the server process of connections accepted with accept() instead of accept4()",
    },
    Hook {
        program: programs::CONNECT4,
        section: "cgroup/connect4",
        attach: Attach::Cgroup,
        required: false,
        purpose: "connected UDP sockets (IPv4)",
    },
    Hook {
        program: programs::CONNECT6,
        section: "cgroup/connect6",
        attach: Attach::Cgroup,
        required: false,
        purpose: "connected UDP sockets (IPv6)",
    },
    Hook {
        program: programs::SENDMSG4,
        section: "cgroup/sendmsg4",
        attach: Attach::Cgroup,
        required: false,
        purpose: "UDP datagrams sent (IPv4)",
    },
    Hook {
        program: programs::SENDMSG6,
        section: "cgroup/sendmsg6",
        attach: Attach::Cgroup,
        required: false,
        purpose: "UDP datagrams sent (IPv6)",
    },
    Hook {
        program: programs::RECVMSG4,
        section: "cgroup/recvmsg4",
        attach: Attach::Cgroup,
        required: false,
        purpose: "UDP datagrams received (IPv4)",
    },
    Hook {
        program: programs::RECVMSG6,
        section: "cgroup/recvmsg6",
        attach: Attach::Cgroup,
        required: false,
        purpose: "UDP datagrams received (IPv6)",
    },
    Hook {
        program: programs::SOCK_SEND_LENGTH,
        section: "tp_btf/sock_send_length",
        attach: Attach::BtfTracepoint { category: "sock", name: "sock_send_length" },
        required: false,
        purpose: "UDP bytes sent, and datagrams of connected UDP sockets (Linux 6.4+)",
    },
    Hook {
        program: programs::SOCK_RECV_LENGTH,
        section: "tp_btf/sock_recv_length",
        attach: Attach::BtfTracepoint { category: "sock", name: "sock_recv_length" },
        required: false,
        purpose: "UDP bytes received, and datagrams of connected UDP sockets (Linux 6.4+)",
    },
    Hook {
        program: programs::TCP_PROBE,
        section: "tp_btf/tcp_probe",
        attach: Attach::BtfTracepoint { category: "tcp", name: "tcp_probe" },
        required: false,
        purpose: "TCP connections open before capture (on their first bytes) and the bytes of open ones",
    },
    Hook {
        program: programs::TCP_RCV_SPACE_ADJUST,
        section: "tp_btf/tcp_rcv_space_adjust",
        attach: Attach::BtfTracepoint { category: "tcp", name: "tcp_rcv_space_adjust" },
        required: false,
        purpose: "the reading process of TCP connections open before capture",
    },
];

/// Loads and attaches one program.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    btf: &Btf,
    cgroup: Result<&File, &String>,
    hook: Hook,
) -> Result<(), KernelError> {
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
    }
    Ok(())
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
