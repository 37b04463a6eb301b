//! The live pipeline: kernel events and Kubernetes changes, merged into one time-ordered
//! stream, written to a recording (segments finalized on a timer, every event journaled
//! meanwhile, so a crash loses about a second at most) and handed to a consumer such as the
//! live engine of `smap watch`.
//!
//! The consumer sees exactly the order a replay of the recording produces (time, then
//! objects before connections), so a live run and its replay give the same output.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smap_analyze::events::idle_lag_ns;
use smap_replay::{
    ConnEvent, ConnKind, DnsAnswer, Event, LossCounters, ObjectEvent, RecordingMeta, RecordingWriter, TimeNs,
    WriterOptions,
};

use crate::clock::Clock;
use crate::k8s_api::{K8sApiError, KubeCounters, KubeOptions, KubeWatch};
use crate::kernel::{KernelCapture, KernelConfig, KernelCounters, SkippedHook};
use crate::kubectl_file::KubectlFile;
use crate::live::error::CaptureError;
use crate::live::sink::RecordingSink;
use crate::netns_addr::NetnsAddresses;
use crate::pod_cgroups::PodCgroups;

/// Events from different CPUs reach user space slightly out of order; by default they
/// are held this long (in event time) and sorted before anything consumes them.
pub const DEFAULT_REORDER_WINDOW: Duration = Duration::from_millis(20);

/// Slack on top of the kernel's drain interval after which no event older than the
/// wall clock minus both can still be on its way: events are released by the wall
/// clock too, not only by newer events, so a quiet node is not held back.
const DRAIN_SLACK: Duration = Duration::from_millis(10);

/// Where Kubernetes state comes from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum K8sSource {
    /// Nowhere: connections stay unattributed (IPs only).
    #[default]
    None,
    /// A kubectl JSON file, followed for changes.
    KubectlFile(PathBuf),
    /// The Kubernetes API, listed and watched.
    Api(KubeOptions),
}

/// How a capture runs.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    /// Recording directory to create; `None` records nothing (a watch without --record).
    pub out: Option<PathBuf>,
    /// Stop after this long; `None`: until the shutdown future resolves.
    pub duration: Option<Duration>,
    /// Where Kubernetes state comes from.
    pub k8s: K8sSource,
    /// Kernel capture settings (node name, table sizes...).
    pub kernel: KernelConfig,
    /// Segments are finalized this often.
    pub checkpoint_every: Duration,
    /// How long events are held to be put in time order.
    pub reorder_window: Duration,
    /// The resolved configuration, stored in the recording.
    pub config: serde_json::Value,
}

/// What a capture did.
#[derive(Clone, Debug, Default)]
pub struct CaptureSummary {
    /// Connection events written.
    pub conn_events: u64,
    /// TCP connections seen opening at their client.
    pub connections: u64,
    /// Events that arrived after newer ones had been released, recorded at the release
    /// time to keep the recording in time order.
    pub late_events: u64,
    /// Kubernetes object events written.
    pub object_events: u64,
    /// DNS answers written (one per address a reply gave).
    pub dns_answers: u64,
    /// Pod cgroups written (one per container whose processes reported connections).
    pub pod_cgroups: u64,
    /// Kernel events lost.
    pub dropped: u64,
    /// Connections or flows evicted from the kernel's bounded tables.
    pub evicted: u64,
    /// Wall-clock time captured.
    pub elapsed: Duration,
    /// Optional hooks that could not be attached.
    pub skipped: Vec<SkippedHook>,
    /// What the Kubernetes API watch survived (zero without one).
    pub k8s_api: KubeCounters,
}

/// Consumes the time-ordered stream of a live capture.
pub trait LiveConsumer {
    /// Events in replay order. Called often, with small batches.
    fn events(&mut self, events: &[Event]);
    /// Called about every second with the current wall-clock time and the kernel's
    /// counters, for consumers that act on the passing of time.
    fn tick(&mut self, _now: TimeNs, _counters: &KernelCounters) {}
    /// Called with what was lost so far, as the recording counts it (kernel and API
    /// watch): before each tick, and once more with the final counts before the end.
    fn losses(&mut self, _losses: &LossCounters) {}
    /// Called once the kernel programs are attached and the Kubernetes snapshot is in.
    fn ready(&mut self) {}
}

/// A consumer that does nothing: plain `smap capture`.
pub struct NoConsumer;

impl LiveConsumer for NoConsumer {
    fn events(&mut self, _events: &[Event]) {}
}

/// Holds events until the reorder window has passed, then releases them in replay order.
struct Reorder {
    pending: Vec<Event>,
    newest: TimeNs,
    window: TimeNs,
    released: Vec<Event>,
    connections: u64,
    addresses: NetnsAddresses,
    cgroups: PodCgroups,
    /// Pod cgroups found in the last batch (kept for its allocation).
    found_cgroups: Vec<smap_replay::PodCgroup>,
    /// Time of the last event released: nothing older may follow it.
    released_upto: TimeNs,
    /// Events that arrived after newer ones were released (UDP flow reports carry
    /// their last datagram's time, up to a report interval old), stamped with the
    /// release time instead so the stream stays in order.
    late: u64,
}

impl Reorder {
    fn new(window: TimeNs, cgroups: PodCgroups) -> Self {
        Reorder {
            pending: Vec::new(),
            newest: TimeNs::MIN,
            window,
            released: Vec::new(),
            connections: 0,
            addresses: NetnsAddresses::default(),
            cgroups,
            found_cgroups: Vec::new(),
            released_upto: TimeNs::MIN,
            late: 0,
        }
    }

    fn push_conns(&mut self, batch: &mut Vec<ConnEvent>) {
        for event in batch.iter_mut() {
            let pid = event.pid;
            self.addresses.fill(event, pid);
            if event.time_ns < self.released_upto {
                event.time_ns = self.released_upto;
                self.late += 1;
            }
        }
        // Stamped with their first event's time, which the replay order puts them before.
        self.cgroups.first_seen(batch, &mut self.found_cgroups);
        self.pending.extend(self.found_cgroups.drain(..).map(Event::from));
        for event in batch.drain(..) {
            self.newest = self.newest.max(event.time_ns);
            // Counted at the client, so a connection seen from both ends counts once.
            if event.kind == ConnKind::TcpConnect {
                self.connections += 1;
            }
            self.pending.push(Event::Conn(event));
        }
    }

    fn push_dns(&mut self, answers: &mut Vec<DnsAnswer>) {
        for mut answer in answers.drain(..) {
            if answer.time_ns < self.released_upto {
                answer.time_ns = self.released_upto;
                self.late += 1;
            }
            self.newest = self.newest.max(answer.time_ns);
            self.pending.push(Event::from(answer));
        }
    }

    fn push_objects(&mut self, events: Vec<ObjectEvent>) {
        for mut event in events {
            event.time_ns = event.time_ns.max(self.released_upto);
            self.newest = self.newest.max(event.time_ns);
            self.pending.push(Event::Object(Box::new(event)));
        }
    }

    /// Nothing older than `t` may follow any more: later events older than it are
    /// stamped with it, as those arriving after newer ones were released are.
    fn close_before(&mut self, t: TimeNs) {
        self.released_upto = self.released_upto.max(t);
    }

    /// Releases events older than the window (all of them with `flush`), ordered as
    /// a replay merges them: by time, then by [`Event::rank`].
    fn release(&mut self, flush: bool) -> &[Event] {
        let horizon = if flush { TimeNs::MAX } else { self.newest.saturating_sub(self.window) };
        self.pending.sort_by_key(|e| (e.time_ns(), e.rank()));
        let ready = self.pending.partition_point(|e| e.time_ns() <= horizon);
        self.released.clear();
        self.released.extend(self.pending.drain(..ready));
        if let Some(last) = self.released.last() {
            self.released_upto = self.released_upto.max(last.time_ns());
        }
        &self.released
    }
}

/// The next batch of changes from the API watch; never resolves without one.
async fn next_api_changes(watch: Option<&mut KubeWatch>) -> Result<Vec<ObjectEvent>, K8sApiError> {
    match watch {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}

/// What the kernel side (and the API watch) lost, as a recording reports it.
fn losses(k: &KernelCounters, api: Option<&KubeWatch>) -> LossCounters {
    LossCounters {
        // A recursion miss is a program run the kernel skipped: its event is lost too.
        dropped: k.ringbuf_drops + k.recursion_misses,
        evicted: k.conn_evictions + k.udp_flow_evictions,
        unparsed: k.events_malformed + k.dns_malformed + api.map_or(0, |a| a.counters().unparsable),
    }
}

/// Adds the events the recording sink dropped while its disk was behind (the sink adds
/// them itself to what it writes in the recording).
fn with_sink_drops(losses: LossCounters, sink: Option<&RecordingSink>) -> LossCounters {
    LossCounters { dropped: losses.dropped + sink.map_or(0, RecordingSink::dropped), ..losses }
}

/// Runs a capture until `options.duration` passes or `shutdown` resolves, then flushes
/// everything and marks the recording complete.
pub async fn capture(
    options: CaptureOptions,
    shutdown: impl Future<Output = ()>,
    consumer: &mut dyn LiveConsumer,
) -> Result<CaptureSummary, CaptureError> {
    let started = Instant::now();
    let kernel_release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut meta = RecordingMeta::new("capture", &options.kernel.node, kernel_release.trim());
    // One clock for every source: the kernel's events, the objects and the ticks.
    let clock = Clock::measure();
    meta.config = options.config.clone();
    // The API snapshot comes first: RBAC errors surface before anything is loaded, and
    // the first connections already resolve against the cluster.
    let (mut api, api_snapshot) = match &options.k8s {
        K8sSource::Api(kube) => {
            let (watch, snapshot) = KubeWatch::start(KubeOptions { clock, ..kube.clone() }).await?;
            (Some(watch), snapshot)
        }
        K8sSource::None | K8sSource::KubectlFile(_) => (None, Vec::new()),
    };
    // The kubectl snapshot too is taken before the programs start: connections found
    // open at start must come after the state they resolve against.
    let kubectl = match &options.k8s {
        K8sSource::KubectlFile(path) => Some(KubectlFile::open(path, clock.now())?),
        K8sSource::None | K8sSource::Api(_) => None,
    };
    // Load the programs before creating the recording: a host that cannot run them
    // leaves no empty recording behind.
    let mut kernel = KernelCapture::start(KernelConfig { clock, ..options.kernel.clone() })?;
    // One line per cause: a set of programs refused together (the UDP function hooks
    // under lockdown) is one warning, not one per program.
    let mut causes: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for skipped in kernel.skipped() {
        match causes.iter_mut().find(|(r, c, _)| *r == skipped.reason && *c == skipped.consequence) {
            Some((_, _, hooks)) => hooks.push(skipped.hook),
            None => causes.push((&skipped.reason, skipped.consequence, vec![skipped.hook])),
        }
    }
    for (reason, consequence, hooks) in causes {
        tracing::warn!("skipped {}: {reason}; without them: {consequence}", hooks.join(", "));
    }
    let mut writer = match &options.out {
        Some(out) => Some(RecordingSink::start(RecordingWriter::create(out, meta, WriterOptions::live())?)?),
        None => None,
    };
    let window = i64::try_from(options.reorder_window.as_nanos()).unwrap_or(i64::MAX);
    let cgroups = PodCgroups::new(kernel.cgroup_root().map(Path::to_owned), Arc::clone(&options.kernel.node));
    let mut reorder = Reorder::new(window, cgroups);
    let settled_lag = i64::try_from((options.kernel.drain_interval + DRAIN_SLACK).as_nanos()).unwrap_or(i64::MAX);
    reorder.push_objects(api_snapshot);
    let mut kubectl = kubectl.map(|(file, snapshot)| {
        reorder.push_objects(snapshot);
        file
    });
    consumer.ready();

    let deadline = options.duration.map(|d| tokio::time::Instant::now() + d);
    let sleep_until_deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until_deadline, shutdown);
    let mut checkpoint = tokio::time::interval(options.checkpoint_every);
    checkpoint.tick().await;
    let mut second = tokio::time::interval(Duration::from_secs(1));
    let mut batch = Vec::new();
    let mut answers = Vec::new();
    let mut tick: Option<TimeNs> = None;
    let running: Result<(), CaptureError> = async {
        loop {
            tokio::select! {
                () = &mut sleep_until_deadline => return Ok(()),
                () = &mut shutdown => return Ok(()),
                _ = checkpoint.tick() => {
                    if let Some(writer) = writer.as_mut() {
                        writer.checkpoint(&losses(&kernel.counters()?, api.as_ref()));
                    }
                }
                _ = second.tick() => {
                    let now = clock.now();
                    if let Some(file) = kubectl.as_mut() {
                        reorder.push_objects(file.poll(now));
                    }
                    tick = Some(now);
                }
                read = kernel.next_batch(&mut batch) => {
                    read?;
                    reorder.push_conns(&mut batch);
                    kernel.take_dns(&mut answers);
                    reorder.push_dns(&mut answers);
                }
                changes = next_api_changes(api.as_mut()) => reorder.push_objects(changes?),
            }
            // Release what is older than the drain lag by the capture's clock (the
            // horizon is `newest - window`).
            reorder.newest = reorder.newest.max(clock.now().saturating_sub(settled_lag).saturating_add(window));
            let released = reorder.release(false);
            if let Some(writer) = writer.as_mut() {
                if let Some(error) = writer.take_error() {
                    return Err(error.into());
                }
                writer.write(released);
            }
            consumer.events(released);
            // After the release, which has handed over everything older than the
            // settled lag: the consumer's tick moves its event time to `now` less
            // IDLE_LAG, so whatever arrives older than that is stamped with it, in
            // the recording too, and a replay folds it where the live engine did.
            if let Some(now) = tick.take() {
                reorder.close_before(now.saturating_sub(idle_lag_ns()));
                if let Some(writer) = writer.as_mut() {
                    writer.note_tick(now);
                }
                let counters = kernel.counters()?;
                consumer.losses(&with_sink_drops(losses(&counters, api.as_ref()), writer.as_ref()));
                consumer.tick(now, &counters);
            }
        }
    }
    .await;
    if let Err(error) = running {
        // What was captured before the failure is kept: the held events are written
        // and the segments finalized; the recording stays marked unfinished.
        let losses = kernel.counters().map(|c| losses(&c, api.as_ref())).unwrap_or_default();
        let released = reorder.release(true);
        if let Some(mut writer) = writer {
            writer.write(released);
            // The failure itself is what gets reported; a second one while saving
            // cannot be, beyond the log.
            if let Err(e) = writer.abandon(&losses) {
                tracing::warn!("saving the recording after the capture failed: {e}");
            }
        }
        return Err(error);
    }
    let counters = kernel.finish(&mut batch)?;
    reorder.push_conns(&mut batch);
    kernel.take_dns(&mut answers);
    reorder.push_dns(&mut answers);
    let released = reorder.release(true);
    if let Some(writer) = writer.as_mut() {
        writer.write(released);
    }
    consumer.events(released);
    let source_losses = losses(&counters, api.as_ref());
    let losses = with_sink_drops(source_losses, writer.as_ref());
    consumer.losses(&losses);
    let counters_written = match writer {
        // The sink adds what it dropped itself.
        Some(writer) => writer.finish(&source_losses)?.counters,
        None => smap_replay::Counters::default(),
    };
    Ok(CaptureSummary {
        conn_events: counters_written.conn_events,
        connections: reorder.connections,
        late_events: reorder.late,
        object_events: counters_written.object_events,
        dns_answers: counters_written.dns_answers,
        pod_cgroups: counters_written.pod_cgroups,
        dropped: losses.dropped,
        evicted: losses.evicted,
        elapsed: started.elapsed(),
        skipped: kernel.skipped().to_vec(),
        k8s_api: api.as_ref().map(KubeWatch::counters).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use smap_replay::Side;

    use super::*;

    fn connect(time_ns: TimeNs) -> ConnEvent {
        ConnEvent {
            time_ns,
            node: Arc::from("n1"),
            kind: ConnKind::TcpConnect,
            side: Side::Client,
            src_ip: "10.244.0.1".parse().unwrap(),
            src_port: 40000,
            dst_ip: "10.244.0.2".parse().unwrap(),
            dst_port: 80,
            pid: 1,
            comm: Arc::from("curl"),
            cgroup_id: 0,
            netns: 1,
            socket_id: 1,
            bytes_sent: 0,
            bytes_received: 0,
            retransmits: 0,
            error: 0,
        }
    }

    #[test]
    fn an_event_older_than_a_tick_that_passed_it_is_stamped_with_the_tick() {
        let mut reorder = Reorder::new(0, PodCgroups::new(None, Arc::from("n1")));
        reorder.push_conns(&mut vec![connect(1_000)]);
        assert_eq!(reorder.release(false).len(), 1);
        // The watch's tick moved its event time to 8 s; a connection of 5 s arrives after.
        reorder.close_before(8_000);
        reorder.push_conns(&mut vec![connect(5_000), connect(9_000)]);
        let times: Vec<TimeNs> = reorder.release(true).iter().map(Event::time_ns).collect();
        assert_eq!(times, [8_000, 9_000]);
        assert_eq!(reorder.late, 1);
    }
}
