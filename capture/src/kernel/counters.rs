//! What the kernel capture counted: its own tallies, the kernel's per-CPU counters and
//! the programs' recursion misses, as one set of [`KernelCounters`].

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use aya_obj::generated::{bpf_cmd, bpf_prog_info};
use smap_ebpf::{counter, maps, programs};

use super::{KernelCapture, KernelError, UdpPath};

/// What the capture counted; losses are never silent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// How UDP datagrams are seen on this kernel.
    pub udp_path: UdpPath,
    /// Records read from the ring buffer.
    pub events_received: u64,
    /// Records that could not be decoded (too short, unknown kind or address family).
    pub events_malformed: u64,
    /// Times the kernel woke the reader because the wakeup threshold was pending
    /// (the other drains come from the timer).
    pub wakeups: u64,
    /// Events the kernel could not reserve ring-buffer space for: lost.
    pub ringbuf_drops: u64,
    /// TCP sockets evicted from the kernel's connection map while open: their close is
    /// reported without owner and with a guessed side. As of the last UDP flush.
    pub conn_evictions: u64,
    /// UDP flows evicted from the kernel's flow map: traffic since their last report is
    /// lost. As of the last UDP flush.
    pub udp_flow_evictions: u64,
    /// UDP flow reports produced.
    pub udp_flow_reports: u64,
    /// TCP closes of sockets the kernel had not seen open (before capture, or evicted).
    pub close_untracked: u64,
    /// TCP connects that completed without their connect() being seen.
    pub connect_untracked: u64,
    /// accept()s of connections whose handshake was not seen.
    pub accept_untracked: u64,
    /// Kernel map updates that failed outright (not LRU evictions).
    pub map_update_failures: u64,
    /// Program runs the kernel skipped because the same program was already running on
    /// that CPU (a softirq interrupting it): the events they would have made are lost.
    /// Summed over all attached programs.
    pub recursion_misses: u64,
    /// Open connections found on their first bytes (not seen opening).
    pub tcp_existing: u64,
    /// Open connections found by the enumeration at start.
    pub tcp_enumerated: u64,
    /// Network namespaces the enumeration at start listed.
    pub namespaces_enumerated: u64,
    /// Network namespaces it could not enter or list.
    pub namespaces_not_enumerated: u64,
    /// Progress reports of open connections.
    pub tcp_progress: u64,
    /// Connections reported still open at the end.
    pub tcp_open_at_end: u64,
    /// Sockets not seen opening whose side no listener and no ephemeral port told: the
    /// lower port was taken as the server's.
    pub sides_by_port_order: u64,
    /// DNS replies the kernel copied.
    pub dns_replies: u64,
    /// DNS replies without an answer (NXDOMAIN, NODATA...), left in the kernel.
    pub dns_skipped: u64,
    /// Addresses those replies gave (DNS answers reported).
    pub dns_answers: u64,
    /// Replies longer than the kernel copies: the answers past the cut are lost.
    pub dns_truncated: u64,
    /// Replies that were no DNS message, skipped.
    pub dns_malformed: u64,
}

impl KernelCapture {
    /// The counters now (evictions as of the last UDP flush).
    pub fn counters(&self) -> Result<KernelCounters, KernelError> {
        let k = self.kernel_counters()?;
        let get = |i: u32| k.get(i as usize).copied().unwrap_or(0);
        Ok(KernelCounters {
            udp_path: self.udp_path,
            events_received: self.stats.events_received,
            events_malformed: self.stats.events_malformed,
            wakeups: self.stats.wakeups,
            ringbuf_drops: get(counter::RINGBUF_DROPS),
            conn_evictions: self.stats.conn_evictions,
            udp_flow_evictions: self.stats.udp_flow_evictions,
            udp_flow_reports: self.stats.udp_flow_reports,
            close_untracked: get(counter::CLOSE_UNTRACKED),
            connect_untracked: get(counter::CONNECT_UNTRACKED),
            accept_untracked: get(counter::ACCEPT_UNTRACKED),
            map_update_failures: get(counter::MAP_FULL),
            recursion_misses: self
                .attached
                .iter()
                // A skipped nested wakeup loses nothing.
                .filter(|&&name| name != programs::WAKE_READER)
                .filter_map(|name| self.ebpf.program(name))
                .filter_map(|p| p.fd().ok())
                .map(|fd| recursion_misses(fd.as_fd()))
                .sum(),
            tcp_existing: get(counter::TCP_EXISTING),
            tcp_enumerated: self.stats.tcp_enumerated,
            namespaces_enumerated: self.stats.namespaces_enumerated,
            namespaces_not_enumerated: self.stats.namespaces_not_enumerated,
            tcp_progress: get(counter::TCP_PROGRESS),
            tcp_open_at_end: self.stats.tcp_open_at_end,
            sides_by_port_order: self.converter.sides_by_port_order,
            dns_replies: self.stats.dns.replies,
            dns_skipped: get(counter::DNS_SKIPPED),
            dns_answers: self.stats.dns.answers,
            dns_truncated: self.stats.dns.truncated,
            dns_malformed: self.stats.dns.malformed,
        })
    }

    /// Sums of the kernel's per-CPU counters.
    pub(super) fn kernel_counters(&self) -> Result<Vec<u64>, KernelError> {
        (0..counter::LEN)
            .map(|i| {
                self.counters
                    .get(&i, 0)
                    .map(|per_cpu| per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
                    .map_err(|source| KernelError::Map { map: maps::COUNTERS, source })
            })
            .collect()
    }
}

/// `bpf_prog_info.recursion_misses` of a loaded program (0 if it cannot be read: the
/// field exists since Linux 5.12).
fn recursion_misses(fd: BorrowedFd<'_>) -> u64 {
    /// The `info` member of `union bpf_attr`, for BPF_OBJ_GET_INFO_BY_FD.
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: bpf_prog_info is a C struct of integers, for which all-zero is valid (and
    // what the kernel expects of fields it should fill).
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let Ok(fd) = u32::try_from(fd.as_raw_fd()) else {
        return 0;
    };
    let attr = InfoByFd {
        bpf_fd: fd,
        info_len: size_of::<bpf_prog_info>() as u32,
        info: std::ptr::from_mut(&mut info) as u64,
    };
    // SAFETY: attr is a valid bpf_attr prefix for this command, and info points to a
    // writable bpf_prog_info of the announced length that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            std::ptr::from_ref(&attr),
            size_of::<InfoByFd>(),
        )
    };
    if rc == 0 {
        info.recursion_misses
    } else {
        0
    }
}
