//! The recording writer on a thread of its own. Parquet encoding, zstd, fsync and
//! renames take milliseconds on a good disk and seconds on a stalled one (a busy node's
//! root volume, a network disk); done in the capture loop they would stop it from
//! draining the kernel's ring buffer, which then drops events. Here the loop only hands
//! batches over.
//!
//! Events waiting for the writer are bounded ([`MAX_PENDING_EVENTS`]): past that a
//! stalled disk costs events, counted as dropped in the recording's loss counters, never
//! unbounded memory. A write error ends the capture as before, at the loop's next turn.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use smap_replay::{Event, LossCounters, RecordingMeta, RecordingWriter, ReplayError, TimeNs};

use crate::record::CaptureError;

/// Events handed over but not yet written, at most: about 200 MiB of events in memory,
/// a minute of a busy node's connections.
pub const MAX_PENDING_EVENTS: u64 = 1 << 20;

enum Job {
    Events(Vec<Event>),
    Tick(TimeNs),
    Checkpoint(LossCounters),
    /// Finalize: complete (`finish`) or, after a failure, checkpointed and left
    /// unfinished.
    End {
        losses: LossCounters,
        complete: bool,
    },
}

/// Shared between the loop and the writer thread.
#[derive(Default)]
struct Shared {
    pending: AtomicU64,
    dropped: AtomicU64,
    error: Mutex<Option<ReplayError>>,
}

/// A [`RecordingWriter`] fed from the capture loop without blocking it.
pub(crate) struct RecordingSink {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    thread: JoinHandle<Option<RecordingMeta>>,
    /// Whether the last batch was dropped: warn once per streak, not per batch.
    overflowing: bool,
}

impl RecordingSink {
    /// Starts the writer thread.
    pub(crate) fn start(writer: RecordingWriter) -> Result<Self, CaptureError> {
        let (jobs, queue) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("smap-recorder".into())
            .spawn(move || run(writer, &queue, &thread_shared))
            .map_err(|e| CaptureError::Writer(format!("cannot start its thread: {e}")))?;
        Ok(RecordingSink { jobs, shared, thread, overflowing: false })
    }

    /// Hands events over; drops them (counted) when the writer is too far behind.
    pub(crate) fn write(&mut self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let n = events.len() as u64;
        if self.shared.pending.load(Ordering::Relaxed) + n > MAX_PENDING_EVENTS {
            self.shared.dropped.fetch_add(n, Ordering::Relaxed);
            if !std::mem::replace(&mut self.overflowing, true) {
                tracing::warn!(
                    "the recording's disk is not keeping up: {MAX_PENDING_EVENTS} events wait for it; \
                     dropping new ones (counted as dropped) until it catches up"
                );
            }
            return;
        }
        self.overflowing = false;
        self.shared.pending.fetch_add(n, Ordering::Relaxed);
        self.send(Job::Events(events.to_vec()));
    }

    /// Notes the capture's clock (see [`RecordingWriter::note_tick`]).
    pub(crate) fn note_tick(&mut self, now: TimeNs) {
        self.send(Job::Tick(now));
    }

    /// Finalizes the open segments when the writer gets to it.
    pub(crate) fn checkpoint(&mut self, losses: &LossCounters) {
        self.send(Job::Checkpoint(self.with_drops(losses)));
    }

    /// Events this sink dropped because the writer was behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The writer's first error, once: the capture stops on it.
    pub(crate) fn take_error(&self) -> Option<ReplayError> {
        self.shared.error.lock().ok().and_then(|mut e| e.take())
    }

    /// Waits for everything handed over to be written, then completes the recording.
    pub(crate) fn finish(self, losses: &LossCounters) -> Result<RecordingMeta, CaptureError> {
        self.end(losses, true)?.ok_or_else(|| CaptureError::Writer("its thread ended without finishing".into()))
    }

    /// After a failure: writes what was handed over and checkpoints, leaving the
    /// recording marked unfinished.
    pub(crate) fn abandon(self, losses: &LossCounters) -> Result<(), CaptureError> {
        self.end(losses, false).map(|_| ())
    }

    fn end(self, losses: &LossCounters, complete: bool) -> Result<Option<RecordingMeta>, CaptureError> {
        let losses = self.with_drops(losses);
        self.send(Job::End { losses, complete });
        let RecordingSink { jobs, shared, thread, .. } = self;
        drop(jobs);
        let meta = thread.join().map_err(|_| CaptureError::Writer("its thread panicked".into()))?;
        match shared.error.lock().ok().and_then(|mut e| e.take()) {
            Some(error) => Err(error.into()),
            None => Ok(meta),
        }
    }

    fn with_drops(&self, losses: &LossCounters) -> LossCounters {
        LossCounters { dropped: losses.dropped + self.dropped(), ..*losses }
    }

    fn send(&self, job: Job) {
        // The thread lives as long as the sender; a send fails only after it failed,
        // which take_error reports.
        let _ = self.jobs.send(job);
    }
}

/// The writer thread: jobs in order until the end; after an error, the rest is
/// discarded so the loop never waits, and the error waits for the loop to take it.
fn run(mut writer: RecordingWriter, queue: &mpsc::Receiver<Job>, shared: &Shared) -> Option<RecordingMeta> {
    let fail = |e: ReplayError| {
        if let Ok(mut slot) = shared.error.lock() {
            slot.get_or_insert(e);
        }
    };
    let mut failed = false;
    while let Ok(job) = queue.recv() {
        match job {
            Job::Events(events) => {
                let n = events.len() as u64;
                if !failed {
                    if let Err(e) = write_all(&mut writer, &events) {
                        failed = true;
                        fail(e);
                    }
                }
                shared.pending.fetch_sub(n, Ordering::Relaxed);
            }
            Job::Tick(now) => writer.note_tick(now),
            Job::Checkpoint(losses) if !failed => {
                if let Err(e) = writer.checkpoint(&losses) {
                    failed = true;
                    fail(e);
                }
            }
            Job::Checkpoint(_) => {}
            Job::End { losses, complete } => {
                if failed {
                    return None;
                }
                if !complete {
                    if let Err(e) = writer.checkpoint(&losses) {
                        fail(e);
                    }
                    return None;
                }
                return match writer.finish(&losses) {
                    Ok(meta) => Some(meta),
                    Err(e) => {
                        fail(e);
                        None
                    }
                };
            }
        }
    }
    None
}

fn write_all(writer: &mut RecordingWriter, events: &[Event]) -> Result<(), ReplayError> {
    for event in events {
        match event {
            Event::Conn(c) => writer.write_conn(c)?,
            Event::Object(o) => writer.write_object(o)?,
        }
    }
    Ok(())
}
