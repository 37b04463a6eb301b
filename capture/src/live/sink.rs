//! The recording writer on a thread of its own ([`crate::live::background`]). Parquet
//! encoding, zstd, fsync and renames take milliseconds on a good disk and seconds on a
//! stalled one (a busy node's root volume, a network disk failing over); the capture
//! loop only hands batches over.
//!
//! At most [`MAX_PENDING_EVENTS`] wait for the disk; past that, events are dropped and
//! counted in the recording's `dropped`. A write error ends the capture as before, at
//! the loop's next turn.

use std::sync::{Arc, Mutex};

use smap_replay::{Event, LossCounters, RecordingMeta, RecordingWriter, ReplayError, TimeNs};

use crate::live::background::Worker;
use crate::live::error::CaptureError;

/// Events handed over but not yet written, at most: some 200 MiB of events in memory,
/// a minute of a busy node's connections.
pub const MAX_PENDING_EVENTS: u64 = 1 << 20;

enum Job {
    Events(Vec<Event>),
    Tick(TimeNs),
    Checkpoint(LossCounters),
    /// Complete the recording, or (after a failure) checkpoint it, leaving it marked
    /// unfinished.
    End {
        losses: LossCounters,
        complete: bool,
    },
}

/// A [`RecordingWriter`] fed from the capture loop without blocking it.
pub(crate) struct RecordingSink {
    worker: Worker<Job, ReplayError>,
    finished: Arc<Mutex<Option<RecordingMeta>>>,
}

impl RecordingSink {
    /// Starts the writer thread.
    pub(crate) fn start(writer: RecordingWriter) -> Result<Self, CaptureError> {
        let finished = Arc::new(Mutex::new(None));
        let slot = finished.clone();
        let mut writer = Some(writer);
        let handle = move |job: Job| -> Result<(), ReplayError> {
            let Some(w) = writer.as_mut() else { return Ok(()) };
            match job {
                Job::Events(events) => {
                    events.iter().try_for_each(|event| w.write_event(event))?;
                    w.commit()
                }
                Job::Tick(now) => {
                    w.note_tick(now);
                    w.commit()
                }
                Job::Checkpoint(losses) => w.checkpoint(&losses),
                Job::End { losses, complete: false } => w.checkpoint(&losses),
                Job::End { losses, complete: true } => {
                    let meta = writer.take().map(|w| w.finish(&losses)).transpose()?;
                    if let Ok(mut slot) = slot.lock() {
                        *slot = meta;
                    }
                    Ok(())
                }
            }
        };
        let worker = Worker::start(
            "smap-recorder",
            MAX_PENDING_EVENTS,
            "the recording's disk is not keeping up: dropping new events (counted as dropped) until it catches up",
            handle,
            || Ok(()),
        )
        .map_err(|e| CaptureError::Writer(format!("cannot start its thread: {e}")))?;
        Ok(RecordingSink { worker, finished })
    }

    /// Hands events over; drops them (counted) when the disk is too far behind.
    pub(crate) fn write(&mut self, events: &[Event]) {
        if !events.is_empty() {
            self.worker.submit(Job::Events(events.to_vec()), events.len() as u64);
        }
    }

    /// Notes the capture's clock (see [`RecordingWriter::note_tick`]).
    pub(crate) fn note_tick(&mut self, now: TimeNs) {
        self.worker.submit_always(Job::Tick(now));
    }

    /// Finalizes the open segments when the writer gets to it; `losses` are the
    /// sources', the sink adds its own drops.
    pub(crate) fn checkpoint(&mut self, losses: &LossCounters) {
        self.worker.submit_always(Job::Checkpoint(self.with_drops(losses)));
    }

    /// Events dropped because the disk was behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.worker.dropped()
    }

    /// The writer's first error, once: the capture stops on it.
    pub(crate) fn take_error(&self) -> Option<ReplayError> {
        self.worker.take_error()
    }

    /// Waits for everything handed over to be written, then completes the recording.
    pub(crate) fn finish(self, losses: &LossCounters) -> Result<RecordingMeta, CaptureError> {
        let finished = self.finished.clone();
        self.end(losses, true)?;
        let meta = finished.lock().ok().and_then(|mut m| m.take());
        meta.ok_or_else(|| CaptureError::Writer("its thread ended without finishing".into()))
    }

    /// After a failure: writes what was handed over and checkpoints, leaving the
    /// recording marked unfinished.
    pub(crate) fn abandon(self, losses: &LossCounters) -> Result<(), CaptureError> {
        self.end(losses, false)
    }

    fn end(mut self, losses: &LossCounters, complete: bool) -> Result<(), CaptureError> {
        self.worker.submit_always(Job::End { losses: self.with_drops(losses), complete });
        if !self.worker.join() {
            return Err(CaptureError::Writer("its thread panicked".into()));
        }
        match self.worker.take_error() {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    fn with_drops(&self, losses: &LossCounters) -> LossCounters {
        LossCounters { dropped: losses.dropped + self.dropped(), ..*losses }
    }
}
