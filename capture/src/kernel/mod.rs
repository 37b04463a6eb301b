//! Live connection events from this node's kernel: loads smap's eBPF programs
//! (`smap-ebpf`), attaches them, and turns what they report into [`ConnEvent`]s.
//!
//! ```no_run
//! # async fn run() -> Result<(), smap_capture::kernel::KernelError> {
//! use smap_capture::kernel::{KernelCapture, KernelConfig};
//!
//! let mut capture = KernelCapture::start(KernelConfig::new("node-a"))?;
//! for hook in capture.skipped() {
//!     eprintln!("not attached: {} ({}): {}", hook.program, hook.hook, hook.reason);
//! }
//! let mut batch = Vec::new();
//! loop {
//!     capture.next_batch(&mut batch).await?;
//!     for event in batch.drain(..) {
//!         // record it
//!         # let _ = event;
//!     }
//!     # break;
//! }
//! capture.finish(&mut batch)?; // last events and every UDP flow's remainder
//! # Ok(())
//! # }
//! ```
//!
//! The kernel submits events to a ring buffer without waking the reader until 64 KiB are
//! pending (`wake_reader` in `ebpf/src/smap.bpf.c` says why a separate program does the
//! waking); [`KernelCapture::next_batch`] therefore also drains on a timer (50 ms by
//! default). UDP flows are aggregated in a kernel map and reported every
//! [`KernelConfig::udp_flush_interval`].
//!
//! DNS replies delivered to sockets come through the same ring buffer; their answers
//! wait in the capture until [`KernelCapture::take_dns`] takes them.
//!
//! Connections open before the capture are reported once, on their first bytes or by
//! the enumeration at start; open connections that move bytes are reported again every
//! [`KernelConfig::progress_interval`], and [`KernelCapture::finish`] reports those
//! still open (`open_conns`).

mod convert;
mod counters;
mod dns;
mod drain;
mod error;
mod hooks;
mod open_conns;
mod system;
mod udp;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::{Btf, Ebpf, EbpfLoader};
use smap_ebpf::{counter, globals, kind, maps, ConnState, Event, UdpFlowKey};
use smap_replay::{ConnEvent, DnsAnswer};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::{Instant, Interval, MissedTickBehavior};

pub use counters::KernelCounters;
pub use error::{KernelError, MINIMUM_KERNEL};

use convert::Converter;
use dns::DnsStats;
use drain::{convert_all, drain_ring, Sink};

use crate::clock::Clock;
pub use hooks::UdpPath;
use hooks::{attach_all, Attached};
use udp::UdpFlows;

/// Settings of the kernel capture; [`KernelConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    /// Node name stamped on every event.
    pub node: Arc<str>,
    /// Capacity of the kernel's TCP connection map and of its UDP flow map. Connections
    /// beyond it evict the least recently used entry (counted).
    pub max_connections: u32,
    /// Size of the event ring buffer in bytes: a power of two, a multiple of the page
    /// size. Too small a buffer drops events under bursts (counted).
    pub ring_buffer_bytes: u32,
    /// The kernel wakes the reader only once this many bytes are pending.
    pub wakeup_bytes: u64,
    /// How often the ring buffer is drained regardless of wakeups: the latency bound for
    /// events submitted below `wakeup_bytes`.
    pub drain_interval: Duration,
    /// How often UDP flows are read from the kernel and reported.
    pub udp_flush_interval: Duration,
    /// A UDP flow without a datagram for this long is dropped from the kernel map (and
    /// reported anew if traffic resumes).
    pub udp_idle_timeout: Duration,
    /// cgroup v2 directory the socket hooks attach to; `None`: the first cgroup2 mount
    /// in /proc/mounts (its root sees every process).
    pub cgroup_path: Option<PathBuf>,
    /// An open TCP connection that moved bytes is reported again at most this often.
    pub progress_interval: Duration,
    /// The clock events are stamped with; a capture shares one with its other sources.
    pub clock: Clock,
    /// Directory of pinned network namespaces (`ip netns`, container runtimes: one per
    /// pod) whose established connections are enumerated at start, besides the
    /// capture's own namespace; `None`: only its own. Entering them needs CAP_SYS_ADMIN.
    pub netns_dir: Option<PathBuf>,
}

impl KernelConfig {
    /// Defaults: 65 536 connections, 4 MiB ring buffer, 64 KiB wakeup threshold, 50 ms
    /// drain, UDP flows reported every 5 s and dropped after 60 s idle, progress of open
    /// connections every 10 s, namespaces pinned under /var/run/netns enumerated.
    pub fn new(node: impl Into<Arc<str>>) -> Self {
        Self {
            node: node.into(),
            max_connections: 65_536,
            ring_buffer_bytes: 4 << 20,
            wakeup_bytes: 64 << 10,
            drain_interval: Duration::from_millis(50),
            udp_flush_interval: Duration::from_secs(5),
            udp_idle_timeout: Duration::from_secs(60),
            cgroup_path: None,
            progress_interval: Duration::from_secs(10),
            netns_dir: Some(PathBuf::from("/var/run/netns")),
            clock: Clock::measure(),
        }
    }
}

/// An optional hook that could not be attached; capture runs without it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedHook {
    /// Program name in the object.
    pub program: &'static str,
    /// Where it attaches (`cgroup/sendmsg4`, `tp_btf/sock_send_length`...).
    pub hook: &'static str,
    /// What is missing without it.
    pub consequence: &'static str,
    /// Why it failed.
    pub reason: String,
}

/// The loaded and attached programs and their event stream.
///
/// Dropping it detaches every program.
pub struct KernelCapture {
    ring: AsyncFd<RingBuf<MapData>>,
    udp_flows: BpfHashMap<MapData, UdpFlowKey, Event>,
    conns: BpfHashMap<MapData, u64, ConnState>,
    counters: PerCpuArray<MapData, u64>,
    converter: Converter,
    /// DNS answers parsed from the ring, until taken.
    dns: Vec<DnsAnswer>,
    udp: UdpFlows,
    drain_tick: Interval,
    next_udp_flush: Instant,
    udp_flush_interval: Duration,
    udp_idle_ns: u64,
    stats: Stats,
    /// Records of the enumeration at start, handed out by the first batch.
    enumerated: Vec<Event>,
    attached: Vec<&'static str>,
    skipped: Vec<SkippedHook>,
    udp_path: UdpPath,
    /// The cgroup2 directory the hooks attached to.
    cgroup_root: Option<PathBuf>,
    /// Owns the programs and their links (dropping it detaches them).
    ebpf: Ebpf,
}

/// Counts kept in user space.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    events_received: u64,
    events_malformed: u64,
    wakeups: u64,
    udp_flow_reports: u64,
    /// Evictions from the kernel maps, as of the last UDP flush.
    conn_evictions: u64,
    udp_flow_evictions: u64,
    tcp_enumerated: u64,
    namespaces_enumerated: u64,
    namespaces_not_enumerated: u64,
    tcp_open_at_end: u64,
    dns: DnsStats,
}

impl KernelCapture {
    /// Checks the host, loads the programs and attaches them.
    ///
    /// Must run inside a Tokio runtime with IO and time enabled. Required hooks (the TCP
    /// tracepoints) failing is an error; optional ones (UDP) are skipped and listed by
    /// [`KernelCapture::skipped`].
    pub fn start(config: KernelConfig) -> Result<Self, KernelError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(KernelError::NoRuntime);
        }
        if !config.ring_buffer_bytes.is_power_of_two() || config.ring_buffer_bytes < 4096 {
            return Err(KernelError::Config(format!(
                "ring_buffer_bytes must be a power of two of at least one page, not {}",
                config.ring_buffer_bytes
            )));
        }
        if config.max_connections == 0 {
            return Err(KernelError::Config("max_connections must be positive".into()));
        }
        let missing = system::missing_capabilities()?;
        if !missing.is_empty() {
            return Err(KernelError::NotPrivileged { missing });
        }
        if !Path::new(system::VMLINUX_BTF).exists() {
            return Err(KernelError::NoBtf { path: system::VMLINUX_BTF.into() });
        }
        system::ensure_tracefs()?;
        let cgroup = match &config.cgroup_path {
            Some(p) => Some(p.clone()),
            None => system::cgroup2_mount()?,
        };

        let progress_ns = u64::try_from(config.progress_interval.as_nanos()).unwrap_or(u64::MAX);
        if progress_ns == 0 {
            return Err(KernelError::Config("progress_interval must be positive".into()));
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::CONNS, config.max_connections)
            .map_max_entries(maps::UDP_FLOWS, config.max_connections)
            .map_max_entries(maps::EVENTS, config.ring_buffer_bytes)
            .override_global(globals::WAKEUP_BYTES, &config.wakeup_bytes, true)
            .override_global(globals::PROGRESS_NS, &progress_ns, true)
            .load(smap_ebpf::object())?;
        // Parsed after the loader has dropped its own parse (aya 0.14 cannot be handed
        // one): the two at once, 9 MiB each, were the capture's peak memory.
        let btf = Btf::from_sys_fs().map_err(|e| KernelError::Io {
            what: format!("parsing {}", system::VMLINUX_BTF),
            source: std::io::Error::other(e),
        })?;

        let cgroup_dir = match &cgroup {
            Some(p) => File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display())),
            None => Err("no cgroup2 mount in /proc/mounts".to_owned()),
        };
        let Attached { programs: attached, skipped, udp: udp_path } = attach_all(&mut ebpf, &btf, cgroup_dir.as_ref())?;
        tracing::info!(
            attached = attached.len(),
            skipped = skipped.len(),
            udp = udp_path.name(),
            cgroup = ?cgroup,
            "kernel capture started"
        );
        // After the data-path programs are attached, so that a connection is either
        // known to them already or found here: never neither.
        let mut stats = Stats::default();
        let enumeration_started = std::time::Instant::now();
        let enumerated = match open_conns::enumerate(&mut ebpf, &btf, config.netns_dir.as_deref()) {
            Ok(found) => {
                stats.namespaces_enumerated = found.namespaces;
                stats.namespaces_not_enumerated = found.failed_count;
                stats.tcp_enumerated = found.records.iter().filter(|r| r.kind == kind::TCP_EXISTING).count() as u64;
                for (path, reason) in &found.failed {
                    tracing::warn!(
                        "network namespace {} not enumerated ({reason}): its idle connections appear on their first bytes",
                        path.display()
                    );
                }
                tracing::info!(
                    namespaces = found.namespaces,
                    not_enumerated = found.failed_count,
                    connections = stats.tcp_enumerated,
                    elapsed_ms = enumeration_started.elapsed().as_millis() as u64,
                    "open connections enumerated"
                );
                found.records
            }
            Err(reason) => {
                tracing::warn!(
                    "open connections not enumerated at start ({reason}): idle ones appear on their first bytes"
                );
                Vec::new()
            }
        };

        let ring = RingBuf::try_from(take_map(&mut ebpf, maps::EVENTS)?)
            .map_err(|source| KernelError::Map { map: maps::EVENTS, source })?;
        // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as
        // long as the RingBuf lives, and the AsyncFd owns the RingBuf.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| KernelError::Poll(e.into()))?;
        let udp_flows = BpfHashMap::try_from(take_map(&mut ebpf, maps::UDP_FLOWS)?)
            .map_err(|source| KernelError::Map { map: maps::UDP_FLOWS, source })?;
        let conns = BpfHashMap::try_from(take_map(&mut ebpf, maps::CONNS)?)
            .map_err(|source| KernelError::Map { map: maps::CONNS, source })?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, maps::COUNTERS)?)
            .map_err(|source| KernelError::Map { map: maps::COUNTERS, source })?;

        let mut drain_tick = tokio::time::interval(config.drain_interval);
        drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Self {
            ring,
            udp_flows,
            conns,
            counters,
            converter: Converter::new(config.node, config.clock, system::ephemeral_ports()),
            dns: Vec::new(),
            udp: UdpFlows::default(),
            drain_tick,
            next_udp_flush: Instant::now() + config.udp_flush_interval,
            udp_flush_interval: config.udp_flush_interval,
            udp_idle_ns: u64::try_from(config.udp_idle_timeout.as_nanos()).unwrap_or(u64::MAX),
            stats,
            enumerated,
            attached,
            skipped,
            udp_path,
            cgroup_root: cgroup,
            ebpf,
        })
    }

    /// Programs attached, by name.
    pub fn attached(&self) -> &[&'static str] {
        &self.attached
    }

    /// Optional hooks that could not be attached.
    pub fn skipped(&self) -> &[SkippedHook] {
        &self.skipped
    }

    /// The cgroup2 hierarchy the socket hooks attached to (every process's cgroup is
    /// below it); `None` without a cgroup2 mount.
    pub fn cgroup_root(&self) -> Option<&Path> {
        self.cgroup_root.as_deref()
    }

    /// How UDP datagrams are seen on this kernel.
    pub fn udp_path(&self) -> UdpPath {
        self.udp_path
    }

    /// Waits until the kernel signals pending events or the drain interval passes, then
    /// appends every pending event to `out` (possibly none), and the UDP flow reports
    /// when their interval has passed.
    ///
    /// Cancel-safe: dropping the future before it completes loses no event.
    pub async fn next_batch(&mut self, out: &mut Vec<ConnEvent>) -> Result<(), KernelError> {
        if !self.enumerated.is_empty() {
            let records = std::mem::take(&mut self.enumerated);
            convert_all(&records, &mut self.converter, &mut self.stats, out);
            return Ok(());
        }
        let Self { ring, drain_tick, converter, stats, dns, .. } = self;
        let mut sink = Sink { converter, stats, out, dns };
        tokio::select! {
            ready = ring.readable_mut() => {
                let mut guard = ready.map_err(KernelError::Poll)?;
                drain_ring(guard.get_inner_mut(), &mut sink);
                // Events committed after the drain without a wakeup are picked up by the
                // timer; clearing here cannot lose them.
                guard.clear_ready();
            }
            _ = drain_tick.tick() => drain_ring(ring.get_mut(), &mut sink),
        }
        if Instant::now() >= self.next_udp_flush {
            self.next_udp_flush = Instant::now() + self.udp_flush_interval;
            self.flush_udp(out, false)?;
        }
        Ok(())
    }

    /// Appends every pending event, each TCP connection still open and each UDP flow's
    /// unreported traffic to `out`; for the end of a capture.
    pub fn finish(&mut self, out: &mut Vec<ConnEvent>) -> Result<KernelCounters, KernelError> {
        let records = std::mem::take(&mut self.enumerated);
        convert_all(&records, &mut self.converter, &mut self.stats, out);
        let mut sink = Sink { converter: &mut self.converter, stats: &mut self.stats, out, dns: &mut self.dns };
        drain_ring(self.ring.get_mut(), &mut sink);
        let still_open = open_conns::open_at_end(&self.conns, Clock::boot_now());
        let before = out.len();
        convert_all(&still_open, &mut self.converter, &mut self.stats, out);
        self.stats.tcp_open_at_end = (out.len() - before) as u64;
        self.flush_udp(out, true)?;
        self.counters()
    }

    /// Moves the DNS answers read so far to `out`, in the order they arrived. Call
    /// after each [`KernelCapture::next_batch`] and after [`KernelCapture::finish`].
    pub fn take_dns(&mut self, out: &mut Vec<DnsAnswer>) {
        out.append(&mut self.dns);
    }

    /// Reports UDP flows that moved, expires idle ones, and recounts the evictions of
    /// both kernel maps. `all`: the final flush, which expires nothing.
    ///
    /// An LRU map evicts silently; what it evicted is what was inserted and neither
    /// deleted nor still there. The insert and delete counts are read before the
    /// entries are listed, so entries added meanwhile cannot pass for evictions; the
    /// deletes of the connection table after, so closes meanwhile cannot either.
    fn flush_udp(&mut self, out: &mut Vec<ConnEvent>, all: bool) -> Result<(), KernelError> {
        let before = self.kernel_counters()?;
        let get = |i: u32| before.get(i as usize).copied().unwrap_or(0);

        let mut snapshot: HashMap<UdpFlowKey, Event> = HashMap::new();
        for entry in self.udp_flows.iter() {
            let (key, flow) = entry.map_err(|source| KernelError::Map { map: maps::UDP_FLOWS, source })?;
            snapshot.insert(key, flow);
        }
        let idle = (!all).then_some(self.udp_idle_ns);
        let flush = self.udp.flush(&snapshot, Clock::boot_now(), idle);
        for report in &flush.reports {
            if let Some(ev) = self.converter.convert(report) {
                out.push(ev);
                self.stats.udp_flow_reports += 1;
            } else {
                self.stats.events_malformed += 1;
            }
        }
        let deleted_before = self.udp.deleted;
        let mut deleted = 0;
        for key in &flush.expired {
            // Already gone means the LRU evicted it since the snapshot.
            if self.udp_flows.remove(key).is_ok() {
                deleted += 1;
            }
        }
        self.udp.note_deleted(deleted);
        let udp_evicted =
            get(counter::UDP_FLOW_INSERTS).saturating_sub(deleted_before).saturating_sub(snapshot.len() as u64);
        self.stats.udp_flow_evictions = self.stats.udp_flow_evictions.max(udp_evicted);

        // Iteration can revisit keys when entries vanish under it: count distinct ones.
        let live: HashSet<u64> = self.conns.keys().filter_map(Result::ok).collect();
        let after = self.kernel_counters()?;
        let deletes_after = after.get(counter::CONN_DELETES as usize).copied().unwrap_or(0);
        let conn_evicted = open_conns::evictions_at_least(get(counter::CONN_INSERTS), deletes_after, live.len());
        self.stats.conn_evictions = self.stats.conn_evictions.max(conn_evicted);
        Ok(())
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, KernelError> {
    ebpf.take_map(name).ok_or_else(|| KernelError::MissingFromObject(format!("map {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The capture is meant to be moved into a spawned task.
    #[test]
    fn capture_is_send() {
        fn send<T: Send>() {}
        send::<KernelCapture>();
        send::<KernelError>();
    }
}
